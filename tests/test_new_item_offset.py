"""The new-item offset's NDCG budget: the capped offset is the largest whose NDCG@10 stays within the budget,
checked against a brute-force ranking of fixed scores at many offsets."""

import math

import numpy as np
import pytest
import torch

from llmrec.data.split import EvalCases
from llmrec.models.new_item_offset import fit_new_item_offset
from llmrec.ranking import Exclusion

ITEMS, NEW, CASES = 60, 10, 300


class FixedScores:
    """Scores each user's row of a fixed matrix: the offset's input made exact, not a model."""

    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        return self.scores[torch.as_tensor(users)]


@pytest.fixture(scope="module")
def problem():
    generator = np.random.default_rng(3)
    new = torch.zeros(ITEMS + 1, dtype=torch.bool)
    new[ITEMS - NEW + 1:] = True
    scores = torch.as_tensor(generator.normal(size=(CASES, ITEMS + 1)))
    scores[:, new] = 3 * scores[:, new] - 3  # the text path scores new items low, and noisily
    targets, histories = [], []
    for case in range(CASES):
        target = int(generator.integers(ITEMS - NEW + 1, ITEMS + 1)) if case % 10 == 0 else \
            int(generator.integers(1, ITEMS - NEW + 1))
        scores[case, target] += 2.0  # the model has some signal
        others = np.setdiff1d(np.arange(1, ITEMS + 1), [target])
        targets.append(np.array([target]))
        histories.append(generator.choice(others, size=3, replace=False))
    cases = EvalCases(np.arange(CASES), histories, targets)
    return FixedScores(scores), cases, new


def ndcg_and_ranks(scorer: FixedScores, cases: EvalCases, new: torch.Tensor, offset: float):
    """NDCG@10 summed over the cases and each case's 0-based rank, with `offset` added to the new items."""
    scores = Exclusion(cases.histories, keep=cases.targets).apply(scorer.scores + offset * new)
    target = scores.gather(1, torch.as_tensor([[int(t[0])] for t in cases.targets]))
    ranks = (scores > target).sum(1)
    return sum(1 / math.log2(int(r) + 2) for r in ranks if r < 10), ranks


@pytest.mark.parametrize("budget", [0.0, 0.01, 0.05, 0.3])
def test_the_capped_offset_is_the_largest_within_the_ndcg_budget(problem, budget):
    scorer, cases, new = problem
    fit = fit_new_item_offset(scorer, cases, new, budget)
    assert fit.likelihood is not None and fit.value == min(fit.likelihood, fit.budget_cap)
    warm_only, _ = ndcg_and_ranks(scorer, cases, new, -1e9)
    threshold = (1 - budget) * warm_only - 1e-9
    chosen, chosen_ranks = ndcg_and_ranks(scorer, cases, new, fit.value)
    assert chosen >= threshold
    for offset in np.linspace(fit.value, fit.likelihood, 400)[1:]:
        value, ranks = ndcg_and_ranks(scorer, cases, new, float(offset))
        # any larger offset within the budget ranks every case as the chosen one does (the same step)
        assert value < threshold or torch.equal(ranks, chosen_ranks)


def test_the_likelihood_offset_costs_ndcg_here_so_the_cap_binds(problem):
    scorer, cases, new = problem
    uncapped = fit_new_item_offset(scorer, cases, new, 1.0)
    capped = fit_new_item_offset(scorer, cases, new, 0.01)
    assert uncapped.budget_cap is None and uncapped.value == uncapped.likelihood
    assert capped.likelihood == uncapped.likelihood and capped.value < uncapped.likelihood
    warm_only, _ = ndcg_and_ranks(scorer, cases, new, -1e9)
    assert ndcg_and_ranks(scorer, cases, new, uncapped.value)[0] < 0.99 * warm_only


def test_nothing_is_fit_without_new_items(problem):
    scorer, cases, _ = problem
    assert fit_new_item_offset(scorer, cases, torch.zeros(ITEMS + 1, dtype=torch.bool), 0.01) is None
