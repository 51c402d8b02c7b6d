"""Ranking metrics against hand-computed values."""

import math

import numpy as np
import pytest

from llmrec.eval import metrics as M

INF = np.inf


def test_single_target_metrics():
    ranks = np.array([[0.0], [2.0], [10.0]])
    n_rel = np.array([1, 1, 1])
    assert M.hit_rate(ranks, 5).tolist() == [1, 1, 0]
    assert M.ndcg(ranks, n_rel, 5) == pytest.approx([1.0, 0.5, 0.0])  # 1/log2(2+2) = 0.5
    assert M.reciprocal_rank(ranks) == pytest.approx([1.0, 1 / 3, 1 / 11])
    assert M.recall(ranks, n_rel, 5).tolist() == [1, 1, 0]
    assert M.precision(ranks, 5) == pytest.approx([0.2, 0.2, 0.0])
    assert M.ndcg(ranks, n_rel, 11) == pytest.approx([1.0, 0.5, 1 / math.log2(12)])


def test_multi_target_metrics():
    ranks = np.array([[0.0, 3.0, INF]])  # two relevant items, padded with inf
    n_rel = np.array([2])
    dcg = 1 + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert M.ndcg(ranks, n_rel, 5) == pytest.approx([dcg / idcg])
    assert M.recall(ranks, n_rel, 5) == pytest.approx([1.0])
    assert M.precision(ranks, 5) == pytest.approx([0.4])
    assert M.f1(ranks, n_rel, 5) == pytest.approx([2 * 0.4 * 1.0 / 1.4])
    assert M.recall(ranks, n_rel, 2) == pytest.approx([0.5])
    assert M.ndcg(ranks, n_rel, 2) == pytest.approx([1 / idcg])
    assert M.f1(np.array([[INF]]), np.array([1]), 5) == pytest.approx([0.0])


def test_coverage_counts_distinct_items():
    assert M.coverage(np.array([[1, 2], [2, 3]]), num_items=4) == pytest.approx(0.75)


def test_intra_list_diversity_by_hand():
    vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 0]], dtype=float)  # row 0 = padding
    # list 1: orthogonal pair -> distance 1; list 2: identical directions -> 0
    assert M.intra_list_diversity(np.array([[1, 2], [1, 3]]), vectors) == pytest.approx([1.0, 0.0])
    # three items: pairs (1,2)=1, (1,3)=0, (2,3)=1 -> mean 2/3
    assert M.intra_list_diversity(np.array([[1, 2, 3]]), vectors) == pytest.approx([2 / 3])


def test_novelty_by_hand():
    popularity = np.array([0, 8, 2, 0])  # item 3 never chosen: counted as once
    # 8 users: -log2(8/8)=0, -log2(2/8)=2, -log2(1/8)=3
    assert M.novelty(np.array([[1, 2], [2, 3]]), popularity, 8) == pytest.approx([1.0, 2.5])


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_cases():
    rng = np.random.default_rng(0)
    few, many = rng.random(50) < 0.1, rng.random(5000) < 0.1
    low, high = M.bootstrap_interval(few, seed=1)
    assert low <= few.mean() <= high
    narrow = M.bootstrap_interval(many, seed=1)
    assert narrow[1] - narrow[0] < (high - low) / 5
    assert M.bootstrap_interval(few, seed=1) == (low, high)  # seeded
    assert M.bootstrap_interval(np.ones(7), seed=1) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least one case"):
        M.bootstrap_interval(np.array([]), seed=1)
