"""The one ranking path: the exclusion rule, top items, `rank` over plain and staged scorers, and the evaluator's
use of the same rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.config import EvalConfig
from llmrec.data.split import EvalCases, make_split
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.ranking import Exclusion, StagedScorer, rank, top_items
from synthetic import cyclic_dataset


class ByIndex:
    """Scores item i as i (higher items first)."""

    def __init__(self, num_items: int) -> None:
        self.row = torch.arange(num_items + 1, dtype=torch.float32)

    def score(self, users, histories):
        return self.row.expand(len(histories), -1)


class Reversed(StagedScorer):
    """A two-stage scorer: the `n` best allowed items by index, then reversed (the lowest of them first), above
    every other item."""

    def __init__(self, num_items: int, n: int) -> None:
        self.row = torch.arange(num_items + 1, dtype=torch.float32)
        self.n = n
        self.seen: list[Exclusion] = []

    def score(self, users, histories, exclusion):
        self.seen.append(exclusion)
        scores = self.row.expand(len(histories), -1).clone()
        candidates = top_items(scores, exclusion, self.n)
        for row, items in enumerate(candidates.items):
            scores[row, items] = 1000.0 + torch.arange(len(items), dtype=torch.float32)
        return scores


def ids(rows: list[list[int]]) -> list[np.ndarray]:
    return [np.array(r, dtype=np.int64) for r in rows]


def test_the_rule_leaves_out_padding_history_and_extra_items_but_not_kept_ones():
    exclusion = Exclusion(ids([[1, 2, 2], [], [3]]), extra=ids([[5], [4], []]), keep=ids([[2], [], [3]]))
    mask = exclusion.mask(7)
    assert mask.tolist() == [
        [True, True, False, False, False, True, False],
        [True, False, False, False, True, False, False],
        [True, False, False, False, False, False, False],
    ]
    scores = torch.arange(14, dtype=torch.float32).reshape(2, 7)
    masked = Exclusion(ids([[6], []])).apply(scores)
    assert masked[0, 6] == -torch.inf and masked[0, 0] == -torch.inf and masked[1, 6] == 13
    assert scores[0, 6] == 6  # left unchanged


def test_top_items_pads_with_no_item_when_too_few_may_be_ranked():
    scores = torch.tensor([[9.0, 1.0, 3.0, 2.0]])
    top = top_items(scores, Exclusion(ids([[2]])), 5)
    assert top.items.tolist() == [[3, 1, 0]]
    assert top.scores[0, :2].tolist() == [2.0, 1.0] and top.scores[0, 2] == -torch.inf


def test_rank_never_returns_excluded_items():
    top = rank(ByIndex(10), np.array([0, 1]), ids([[10, 8], []]), k=3, exclude=ids([[9], [10]]))
    assert top.items.tolist() == [[7, 6, 5], [9, 8, 7]]
    assert top.scores.tolist() == [[7.0, 6.0, 5.0], [9.0, 8.0, 7.0]]


def test_a_staged_scorer_is_told_the_exclusion_and_never_spends_a_candidate_on_an_excluded_item():
    scorer = Reversed(10, n=3)
    top = rank(scorer, np.array([0]), ids([[10, 9]]), k=4, exclude=ids([[8]]))
    assert scorer.seen[0].extra is not None
    assert top.items.tolist() == [[5, 6, 7, 4]]  # candidates 7, 6, 5 reversed, then the rest by index


def test_the_evaluator_keeps_a_repeated_target_rankable_for_plain_and_staged_scorers():
    """A target that is also in the history (a repeat) is ranked like any other item, and a staged scorer sees
    the same rule, so it may pick the target as a candidate."""
    split = make_split(cyclic_dataset(num_users=10, num_items=12))
    cases = EvalCases(np.array([0]), ids([[12, 11, 5]]), ids([[12]]))  # the best item by index, seen before
    evaluator = FullRankingEvaluator(split, EvalConfig(ks=[1, 3]))
    assert evaluator.rank(ByIndex(12), cases).ranks[0, 0] == 0
    assert evaluator.rank(Reversed(12, n=3), cases).ranks[0, 0] == 2  # candidates 12, 10, 9 reversed
    assert evaluator.evaluate(Reversed(12, n=1), cases)["HR@1"] == 1.0


@pytest.mark.parametrize("k", [1, 4])
def test_rank_and_the_evaluators_top_lists_agree(k):
    split = make_split(cyclic_dataset(num_users=10, num_items=30))
    cases = split.test
    evaluator = FullRankingEvaluator(split, EvalConfig(ks=[k]))
    listed = evaluator.rank(ByIndex(30), cases).top_items
    ranked = rank(ByIndex(30), cases.users, cases.histories, k, keep=cases.targets)
    assert np.array_equal(listed, ranked.items.numpy())
