"""Hybrid tagged lists: the list is filled from the short-term, long-term and context components of the interest
vector in configured shares, and each item is tagged with the interest that put it there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from llmrec.config import INTEREST_PARTS
from llmrec.models.interest import InterestModel
from llmrec.ranking import Exclusion, StagedScorer
from llmrec.rerank.candidates import item_table

TAGS = INTEREST_PARTS
"""The interest components, in the order `InterestModel.components` returns them."""


@dataclass(frozen=True)
class TaggedItem:
    item: int
    tag: str
    score: float
    """The full interest score (all components), not just the tagged one's contribution."""


def quotas(mix: dict[str, float], active: list[str], k: int) -> dict[str, int]:
    """How many of `k` slots each active interest fills: its share of `mix` renormalised over the active ones
    (largest remainder). An interest that is missing (e.g. no profile) passes its share on."""
    shares = {t: max(0.0, mix.get(t, 0.0)) for t in active}
    total = sum(shares.values())
    if total == 0:
        shares, total = {t: 1.0 for t in active}, float(len(active))
    exact = {t: k * s / total for t, s in shares.items()}
    counts = {t: int(v) for t, v in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - counts[t], reverse=True)[:k - sum(counts.values())]:
        counts[t] += 1
    return counts


def hybrid_list(components: torch.Tensor, table: torch.Tensor, excluded: torch.Tensor, mix: dict[str, float],
                k: int) -> list[TaggedItem]:
    """`components` [3, d] of one query, `table` [num_items + 1, d] item vectors, `excluded` [num_items + 1] bool
    (the query's row of `llmrec.ranking.Exclusion.mask`). Slots are taken in turns (largest quota first), each
    interest taking its best item not yet in the list."""
    contributions = components @ table.T  # [3, num_items + 1]
    total = contributions.sum(0)
    active = [t for i, t in enumerate(TAGS) if components[i].abs().sum() > 0]
    if not active:
        return []
    counts = quotas(mix, active, min(k, int((~excluded).sum())))
    order = {t: contributions[TAGS.index(t)].masked_fill(excluded, -torch.inf).argsort(descending=True).tolist()
             for t in active}
    cursor = {t: 0 for t in active}
    chosen: list[TaggedItem] = []
    taken: set[int] = set()
    while any(counts.values()):
        for tag in sorted(active, key=lambda t: -counts[t]):
            if not counts[tag]:
                continue
            ranked = order[tag]
            while ranked[cursor[tag]] in taken:
                cursor[tag] += 1
            item = ranked[cursor[tag]]
            taken.add(item)
            chosen.append(TaggedItem(item, tag, float(total[item])))
            counts[tag] -= 1
    return chosen


class HybridScorer(StagedScorer):
    """Scores for the evaluator: each query's hybrid list (`length` items) on top, in list order, and every
    other item below in the interest model's order."""

    def __init__(self, model: InterestModel, mix: dict[str, float], length: int) -> None:
        self.model = model
        self.mix = mix
        self.length = length

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray], exclusion: Exclusion) -> torch.Tensor:
        scores = self.model.score(users, histories).cpu()
        table = item_table(self.model)
        components = self.model.components(users, histories)
        excluded = exclusion.mask(scores.shape[1])
        top = scores.max()
        for row in range(len(histories)):
            chosen = hybrid_list(components[row], table, excluded[row], self.mix, self.length)
            for position, tagged in enumerate(chosen):
                scores[row, tagged.item] = top + self.length - position
        return scores
