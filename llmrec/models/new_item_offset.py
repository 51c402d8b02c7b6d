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
items ever scored near the warm ones) has no optimum to report: the offset is then None (and 0 is used).
"""

from __future__ import annotations

import torch

from llmrec.data.split import EvalCases
from llmrec.models.base import Scorer
from llmrec.ranking import Exclusion, allowed_scores

BATCH = 512
BOUND = 30.0
"""Offsets are searched in [-BOUND, BOUND]; scores are dot products of vectors with norms of a few units."""


def fit_new_item_offset(scorer: Scorer, cases: EvalCases, new: torch.Tensor) -> float | None:
    """The maximum-likelihood offset for the items where `new` [num_items + 1] (bool) is true, on `cases` (each
    case's first target is its item), scored by `scorer` without any offset; None when no case's item is new, no
    item is, or the optimum lies outside [-BOUND, BOUND]."""
    if not bool(new.any()) or not len(cases):
        return None
    gaps, new_targets = [], 0
    with torch.no_grad():
        for start in range(0, len(cases), BATCH):
            rows = slice(start, start + BATCH)
            targets = cases.targets[rows]
            scores = allowed_scores(scorer, cases.users[rows], Exclusion(cases.histories[rows], keep=targets))
            scores = scores.to("cpu", torch.float64)
            warm = torch.logsumexp(scores.masked_fill(new, -torch.inf), dim=1)
            cold = torch.logsumexp(scores.masked_fill(~new, -torch.inf), dim=1)
            gaps.append(cold - warm)  # -inf where every new item is excluded: they take no share
            new_targets += sum(bool(new[int(t[0])]) for t in targets)
    if new_targets == 0:
        return None
    gap = torch.cat(gaps)
    low, high = -BOUND, BOUND
    for _ in range(64):
        middle = (low + high) / 2
        share = float(torch.sigmoid(gap + middle).sum())
        low, high = (middle, high) if share < new_targets else (low, middle)
    offset = (low + high) / 2
    return offset if abs(offset) < BOUND - 1e-6 else None
