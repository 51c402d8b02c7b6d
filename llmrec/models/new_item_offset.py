"""The new-item offset: one number that puts the scores of items without interactions on the warm items' scale.

A new item is scored from its text alone; a warm item also from what its interactions taught. Trained on warm items
only, the text path is scored lower for an item it never saw than for the items it learned from, so new items sit
below where their probability puts them. The offset b, added to every new item's score, is fit by maximum
likelihood on held-out interactions (the validation cases), as Platt scaling fits a bias: with A the log-sum-exp of
a case's warm scores and C that of its new items' scores, the softmax gives the new items the share
sigmoid(C - A + b) of the case's probability, and the likelihood is highest where these shares add up to the
number of cases whose item was new:

    sum over cases of sigmoid(C - A + b) = cases with a new item     (monotone in b: solved by bisection)

No case with a new item (a catalog whose every item had interactions before the validation cut) leaves nothing to
fit, and a likelihood still rising at the end of the search range (every case's item new, or none of the new
items ever scored near the warm ones) has no optimum to report: the likelihood offset is then None (and 0 is used).

The likelihood spreads probability; a list of ten shows only the top of it, and the new items it lifts there push
warm items out. The NDCG budget caps that cost: the offset is lowered to the largest value at which the cases'
NDCG@10 is at least (1 - budget) times their NDCG@10 with the warm items alone. That curve is exact and cheap: a
case's rank changes only where the offset carries a new item across its target (a warm target) or its target across
a warm item (a new target), and only the top ten of the other group can matter, so one scoring pass collects every
case's breakpoints and the NDCG change at each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from llmrec.data.split import EvalCases
from llmrec.models.base import Scorer
from llmrec.ranking import Exclusion, allowed_scores

BATCH = 512
BOUND = 30.0
"""Offsets are searched in [-BOUND, BOUND]; scores are dot products of vectors with norms of a few units."""
K = 10
"""The budget is spent on NDCG@10, the metric training early-stops on."""
_GAINS = torch.tensor([1 / math.log2(rank + 2) for rank in range(K)] + [0.0], dtype=torch.float64)
"""NDCG@K's gain of a single target at 0-based rank 0 .. K (K and beyond: 0)."""


@dataclass(frozen=True)
class NewItemOffset:
    """What was fit on the validation cases: the likelihood's offset, the largest offset the NDCG budget allows
    below it, and the value used (`likelihood`, or 0 when it is None, capped by `budget_cap`)."""

    likelihood: float | None
    budget_cap: float | None
    value: float


def fit_new_item_offset(scorer: Scorer, cases: EvalCases, new: torch.Tensor,
                        ndcg_budget: float = 1.0) -> NewItemOffset | None:
    """The offset for the items where `new` [num_items + 1] (bool) is true, on `cases` (each case's first target is
    its item), scored by `scorer` without any offset: the maximum-likelihood offset, lowered where the new items
    would cost more than the share `ndcg_budget` (0 to 1; 1 = no cap) of the cases' NDCG@10 against a ranking of
    the warm items alone. None when no item is new or there are no cases."""
    new = new.cpu()
    if not bool(new.any()) or not len(cases):
        return None
    gaps, new_targets, curve = [], 0, _NdcgCurve()
    with torch.no_grad():
        for start in range(0, len(cases), BATCH):
            rows = slice(start, start + BATCH)
            targets = cases.targets[rows]
            scores = allowed_scores(scorer, cases.users[rows], Exclusion(cases.histories[rows], keep=targets))
            scores = scores.to("cpu", torch.float64)
            warm, cold = scores.masked_fill(new, -torch.inf), scores.masked_fill(~new, -torch.inf)
            gaps.append(torch.logsumexp(cold, dim=1) - torch.logsumexp(warm, dim=1))  # -inf: no new item allowed
            first = torch.tensor([int(t[0]) for t in targets])
            new_targets += int(new[first].sum())
            curve.add(warm, cold, scores.gather(1, first.unsqueeze(1)), new[first])
    likelihood = _likelihood_offset(torch.cat(gaps), new_targets) if new_targets else None
    start = likelihood if likelihood is not None else 0.0
    cap = curve.largest_offset_within(1.0 - ndcg_budget, below=start) if ndcg_budget < 1.0 else None
    return NewItemOffset(likelihood, cap, start if cap is None else min(start, cap))


def _likelihood_offset(gap: torch.Tensor, new_targets: int) -> float | None:
    """The b solving sum(sigmoid(gap + b)) = new_targets by bisection; None outside [-BOUND, BOUND]."""
    low, high = -BOUND, BOUND
    for _ in range(64):
        middle = (low + high) / 2
        share = float(torch.sigmoid(gap + middle).sum())
        low, high = (middle, high) if share < new_targets else (low, middle)
    offset = (low + high) / 2
    return offset if abs(offset) < BOUND - 1e-6 else None


class _NdcgCurve:
    """The cases' NDCG@K sum as a step function of the new-item offset b, built batch by batch: the sum with the
    warm items alone (b = -inf), and each breakpoint with the change it brings once b passes it."""

    def __init__(self) -> None:
        self.warm_only = 0.0
        self.points: list[torch.Tensor] = []
        self.changes: list[torch.Tensor] = []

    def add(self, warm: torch.Tensor, cold: torch.Tensor, target: torch.Tensor, target_new: torch.Tensor) -> None:
        """A batch: scores [B, items] with the other group at -inf, each case's target score [B, 1] and whether
        the target is new [B]."""
        ranks = torch.arange(K)
        # warm target: ahead of it the warm items above, then the j-th best new item once b > target - new_j
        above = torch.where(target_new, 0, (warm > target).sum(1)).clamp(max=K)
        self.warm_only += float(torch.where(target_new, 0.0, _GAINS[above]).sum())
        top_new = cold.topk(min(K, cold.shape[1]), dim=1).values
        rank = (above.unsqueeze(1) + ranks[: top_new.shape[1]]).clamp(max=K)
        self._keep(target - top_new, _GAINS[(rank + 1).clamp(max=K)] - _GAINS[rank], ~target_new)
        # new target: ahead of it the new items above, then the k-th best warm item until b > warm_k - target
        above = (cold > target).sum(1).clamp(max=K)
        top_warm = warm.topk(min(K, warm.shape[1]), dim=1).values
        rank = (above.unsqueeze(1) + ranks[: top_warm.shape[1]]).clamp(max=K)
        self._keep(top_warm - target, _GAINS[rank] - _GAINS[(rank + 1).clamp(max=K)], target_new)

    def _keep(self, points: torch.Tensor, changes: torch.Tensor, cases: torch.Tensor) -> None:
        points, changes = points[cases], changes[cases]
        kept = (changes != 0) & (points < torch.inf)  # +inf: a new item excluded from the list, never crossed
        self.points.append(points[kept])
        self.changes.append(changes[kept])

    def largest_offset_within(self, share: float, below: float) -> float:
        """The largest offset b <= `below` whose NDCG sum is at least `share` times the warm items' alone (a
        point inside the last step that qualifies)."""
        points, changes = torch.cat(self.points).numpy(), torch.cat(self.changes).numpy()
        order = np.argsort(points, kind="stable")
        points, sums = points[order], self.warm_only + np.cumsum(changes[order])
        last = np.r_[points[1:] != points[:-1], True]  # a step's value once all its equal breakpoints are passed
        points, sums = points[last], sums[last]
        finite = points > -np.inf  # a new target above every allowed warm item at any offset
        start = self.warm_only if finite.all() else sums[~finite][-1]
        points, sums = points[finite], sums[finite]
        threshold = share * self.warm_only - 1e-9
        step = int(np.searchsorted(points, below, side="left")) - 1  # the last breakpoint below `below`
        if (sums[step] if step >= 0 else start) >= threshold:
            return below
        good = np.flatnonzero(sums[:step] >= threshold)
        if not len(good):
            return float(points[0]) - 1.0  # below every breakpoint: the new items cost nothing yet
        i = int(good[-1])
        return float(points[i] + points[i + 1]) / 2
