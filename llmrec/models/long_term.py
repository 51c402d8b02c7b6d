"""The interest model's long-term input: one vector per user from the long-term part of their history (the
training history before the profile cut-off), by one of `interest.profile_source`:

- `llm` / `template`: the embedded text of the user's profile (LLM-written or deterministic);
- `mean-items`: the mean text embedding of the long-term items;
- `graph`: the user's LightGCN vector from a graph of long-term interactions only (so it never contains an item
  the model is trained to predict with it); a user the graph does not know is folded in as the mean of their
  long-term items' graph vectors;
- `graph+profile`: the graph vector and the embedded profile text side by side (the text part last).

The same function serves training (all users, stored profiles) and serving (a refreshed user, folded in).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.models.lightgcn import LightGCN
from llmrec.models.text_knn import TextKNN
from llmrec.profiles.quality import profile_text_vectors

TEXT_SOURCES = ("llm", "template")
GRAPH_SOURCES = ("graph", "graph+profile")


def profile_writer_of(source: str, writer: str) -> str | None:
    """The profile writer whose texts a source reads (`graph+profile` reads `writer`'s); None when none."""
    if source in TEXT_SOURCES:
        return source
    return writer if source == "graph+profile" else None


def long_term_vectors(source: str, long_terms: Sequence[np.ndarray], users: np.ndarray,
                      texts: Sequence[str] | None, prompt_version: str | None, encoder: ItemEncoder,
                      item_vectors: np.ndarray, graph: LightGCN | None) -> np.ndarray:
    """[len(long_terms), P] long-term vectors. `users` are the graph's user indices (-1 = fold in from the
    long-term items); `texts` / `prompt_version` are the profiles' for the sources that read one; `graph` is
    the long-term LightGCN for the graph sources."""
    parts = []
    if source in GRAPH_SOURCES:
        if graph is None:
            raise ValueError(f"profile source {source!r} needs the long-term graph model")
        parts.append(graph.user_vectors(users, long_terms).numpy())
    if source == "mean-items":
        parts.append(TextKNN(item_vectors).user_vectors(list(long_terms)).numpy())
    if source in TEXT_SOURCES or source == "graph+profile":
        if texts is None or prompt_version is None:
            raise ValueError(f"profile source {source!r} needs profile texts")
        parts.append(profile_text_vectors(list(texts), encoder, prompt_version))
    if not parts:
        raise ValueError(f"unknown profile source {source!r}")
    return np.hstack(parts).astype(np.float32)
