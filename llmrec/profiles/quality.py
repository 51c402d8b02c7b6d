"""Profile quality: what the text says (`profile_quality`) and how well a profile alone retrieves the user's
held-out item (intrinsic check).

For the intrinsic check each user becomes one fixed vector (the embedded profile text, or the mean of the
long-term items' embeddings) and the full-ranking evaluator ranks the whole catalog by dot product with it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from llmrec.claims import ClaimChecker
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.profiles.facts import CatalogFacts
from llmrec.profiles.hygiene import copies_example, words
from llmrec.profiles.writer import Profile


class UserVectorScorer:
    """Scores = user_vectors[user] @ item_vectors.T; a Scorer for `FullRankingEvaluator`."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        self.user_vectors = torch.as_tensor(np.asarray(user_vectors), dtype=torch.float32)
        self.item_vectors = torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return self.user_vectors[torch.as_tensor(users, dtype=torch.long)] @ self.item_vectors.T


def profile_text_vectors(texts: Sequence[str], encoder: ItemEncoder, prompt_version: str) -> np.ndarray:
    """Embed profile texts with the item encoder (cached under the prompt version), one row per text."""
    return encoder.encode(list(texts), f"profile-text/{prompt_version}")


PLACEHOLDERS = ("none yet", "a mix of items")
"""Phrases of the placeholder text earlier versions stored for users without a long-term history."""


def profile_quality(profiles: Sequence[Profile], histories: Sequence[np.ndarray], facts: CatalogFacts,
                    examples: Sequence[str] = ()) -> dict[str, float]:
    """What a set of profiles says, by the numbers (`histories[i]` are the items profile i was written from):

    - `placeholder_share`: texts that are empty or placeholders (`PLACEHOLDERS`);
    - `few_shot_copy_share`: texts sharing a run of words with an example answer of the prompt (`examples`);
    - `distinct_ratio`: distinct texts / texts, over the LLM-written ones (`llm_share` of all);
    - `grounded_rate`: LLM texts naming no catalog title outside the user's history (by the claim checker, so
      stored profiles are measured by today's rule);
    - `category_precision`: of the catalog categories a text names, the share that are the user's (over texts
      naming any); `category_recall`: of the user's top-3 categories, the share the text names;
    - `words_per_profile`.
    """
    claims = ClaimChecker.from_facts(facts)
    llm = [p for p in profiles if p.source == "llm"]
    precision, recall, ungrounded = [], [], 0
    for profile, history in zip(profiles, histories):
        if profile.source == "llm":
            ungrounded += bool(claims.check(profile.text, history).unsupported["title"])
        named = claims.categories_named(profile.text)
        own = {c for item in history for c in facts.categories[int(item)]}
        if named:
            precision.append(len(named & own) / len(named))
        top = [c for c, _ in profile.top_categories[:3]]
        if top:
            recall.append(sum(c in named for c in top) / len(top))
    n = max(1, len(profiles))
    return {
        "profiles": len(profiles),
        "llm_share": len(llm) / n,
        "placeholder_share": sum(_is_placeholder(p.text) for p in profiles) / n,
        "few_shot_copy_share": sum(any(copies_example(words(p.text), e) for e in examples)
                                   for p in profiles) / n,
        "distinct_ratio": len({p.text for p in llm}) / len(llm) if llm else 1.0,
        "grounded_rate": 1 - ungrounded / len(llm) if llm else 1.0,
        "category_precision": float(np.mean(precision)) if precision else 0.0,
        "category_recall": float(np.mean(recall)) if recall else 0.0,
        "words_per_profile": float(np.mean([len(words(p.text)) for p in profiles])) if profiles else 0.0,
    }


def _is_placeholder(text: str) -> bool:
    lowered = text.lower()
    return not lowered.strip() or any(phrase in lowered for phrase in PLACEHOLDERS)
