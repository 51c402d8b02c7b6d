"""The full-ranking evaluator on hand-checkable cases."""

import numpy as np
import pytest
import torch

from llmrec.config import EvalConfig
from llmrec.data.split import EvalCases, make_split
from llmrec.eval.evaluator import FullRankingEvaluator
from synthetic import cyclic_dataset


class FixedScorer:
    """Scores item i as i (or a constant)."""

    def __init__(self, num_items: int, constant: bool = False):
        self.row = torch.ones(num_items + 1) if constant else torch.arange(num_items + 1, dtype=torch.float32)

    def score(self, users, histories):
        return self.row.expand(len(histories), -1)


@pytest.fixture(scope="module")
def split():
    return make_split(cyclic_dataset(num_users=50, num_items=20))


def test_rank_excludes_history_but_not_the_target(split):
    evaluator = FullRankingEvaluator(split, EvalConfig(ks=[1, 5]))
    # items 20, 19 seen; target 17: only item 18 ranks above it
    cases = EvalCases(np.array([0, 1]), [np.array([20, 19]), np.array([20, 17])],
                      [np.array([17]), np.array([17])])
    ranks = evaluator.rank(FixedScorer(split.num_items), cases).ranks
    assert ranks[:, 0].tolist() == [1.0, 2.0]  # target 17 stays rankable although seen (repeat consumption)


def test_constant_scores_get_expected_not_best_rank(split):
    evaluator = FullRankingEvaluator(split, EvalConfig(ks=[3], seed=3))
    metrics = evaluator.evaluate(FixedScorer(split.num_items, constant=True))
    candidates = split.num_items - np.mean([len(np.setdiff1d(h, t)) for h, t in
                                            zip(split.test.histories, split.test.targets)])
    assert 3 / candidates - 0.15 < metrics["HR@3"] < 3 / candidates + 0.15  # best-rank ties would give 1.0
    assert metrics["MRR"] < 0.6
    assert metrics == evaluator.evaluate(FixedScorer(split.num_items, constant=True))  # seeded


def test_metric_names_groups_and_counts(split):
    evaluator = FullRankingEvaluator(split, EvalConfig(ks=[5, 10], tail_user_fraction=0.2))
    metrics = evaluator.evaluate(FixedScorer(split.num_items))
    for name in ["NDCG@10", "HR@10", "Recall@5", "Precision@10", "F1@10", "MRR", "Coverage@10",
                 "NDCG@10-tail-users", "HR@10-tail-items"]:
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["cases"] == 50
    assert metrics["cases-tail-users"] == 10
    assert metrics["Coverage@10"] > 0


def test_perfect_scorer_scores_one(split):
    class Oracle:
        def score(self, users, histories):
            scores = torch.zeros(len(histories), split.num_items + 1)
            for row, user in enumerate(users):
                scores[row, split.test.targets[list(split.test.users).index(user)][0]] = 1.0
            return scores

    metrics = FullRankingEvaluator(split).evaluate(Oracle())
    assert metrics["NDCG@10"] == pytest.approx(1.0)
    assert metrics["MRR"] == pytest.approx(1.0)
