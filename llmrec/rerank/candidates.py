"""What the reranker reads: each query's description and its candidates, the interest model's top N (exact:
`llmrec.ranking.top_items` over the interest scores; or from the ChromaDB index)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from llmrec.data.split import PADDING
from llmrec.index.chroma_index import ItemIndex
from llmrec.models.base import pad_histories
from llmrec.models.interest import InterestModel
from llmrec.ranking import Exclusion, RankedItems


@dataclass
class Queries:
    """What the reranker knows about a batch of queries (B of them)."""

    histories: torch.Tensor
    """[B, H] the most recent history items, left-padded with 0."""
    interest: torch.Tensor
    """[B, d] the interest model's vector after each history."""
    long_weight: torch.Tensor
    """[B] the weight the fusion gave the long-term part."""
    profiles: torch.Tensor
    """[B, P] the long-term profile embedding (zeros without one)."""
    has_profile: torch.Tensor
    """[B] bool."""
    context: torch.Tensor
    """[B, F] user-level context category ids (0 = unknown)."""
    history_lengths: torch.Tensor
    """[B] full history lengths (before the cut to H)."""


def describe_queries(model: InterestModel, users: np.ndarray, histories: Sequence[np.ndarray],
                     history_len: int, context: np.ndarray | None = None,
                     profiles: torch.Tensor | None = None) -> Queries:
    """The reranker's view of each (user, history): `users` are split user indices (-1 = unknown user);
    `context` [B, F] replaces the users' stored context ids, `profiles` [B, P] their long-term inputs."""
    interest, long_weight = model.interest(users, histories, context, profiles)
    profiles, has_profile, stored_context = model.features.rows(users, profiles)
    context = stored_context if context is None else torch.as_tensor(context, dtype=torch.long)
    lengths = torch.as_tensor([len(h) for h in histories], dtype=torch.long)
    return Queries(pad_histories(histories, history_len), interest, long_weight, profiles, has_profile, context,
                   lengths)


def item_table(model: InterestModel) -> torch.Tensor:
    """[num_items + 1, d] the interest model's item vectors (text part + IDs), which the reranker and
    explanations compare (retrieval appends the content and new-item boost coordinates:
    `InterestModel.retrieval_table`)."""
    model.net.eval()
    with torch.no_grad():
        return model.net.items.table().cpu()


class ItemIds(Protocol):
    """Item ids <-> indices: a `Split`, or the serving catalog with the items added online
    (`llmrec.online.items.ItemBook`)."""

    def item_index(self, item_id: str) -> int: ...

    def item_id(self, index: int) -> str: ...


def index_candidates(index: ItemIndex, interest: torch.Tensor, exclusion: Exclusion, n: int,
                     split: ItemIds, num_items: int) -> RankedItems:
    """Top-`n` items from the ChromaDB collection of the interest model's item vectors (inner-product space,
    keyed by item ids, which `split` maps to indices) that `exclusion` allows; `num_items` counts the rows of
    the item table (padding included)."""
    mask = exclusion.mask(num_items)
    exclude = [{split.item_id(i) for i in row.nonzero().flatten().tolist() if i != PADDING} for row in mask]
    found = index.query(interest.numpy(), n, exclude)
    items = torch.zeros(len(found), n, dtype=torch.long)
    scores = torch.full((len(found), n), -torch.inf)
    for row, pairs in enumerate(found):
        if pairs:
            items[row, :len(pairs)] = torch.as_tensor([split.item_index(i) for i, _ in pairs])
            scores[row, :len(pairs)] = torch.as_tensor([s for _, s in pairs], dtype=torch.float32)
    return RankedItems(items, scores)
