"""Ranking metrics computed from the 0-based ranks of each case's relevant items.

`ranks` is a float array [cases, max_relevant] padded with +inf; `n_relevant` holds each case's count.
Under leave-one-out there is one relevant item per case, so HR@K = Recall@K and Precision@K = HR@K / K.
"""

from __future__ import annotations

import numpy as np


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """1 when any relevant item is in the top k."""
    return (ranks < k).any(axis=1).astype(np.float64)


def recall(ranks: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of the relevant items found in the top k."""
    return (ranks < k).sum(axis=1) / n_relevant


def precision(ranks: np.ndarray, k: int) -> np.ndarray:
    """Share of the top k that is relevant."""
    return (ranks < k).sum(axis=1) / k


def f1(ranks: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Harmonic mean of Precision@k and Recall@k (0 where both are 0)."""
    p, r = precision(ranks, k), recall(ranks, n_relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


def ndcg(ranks: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k: DCG of the relevant items in the top k over the ideal DCG."""
    with np.errstate(divide="ignore"):
        gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return gains.sum(axis=1) / ideal


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    """1 / (1 + rank of the best-ranked relevant item), over the full ranking (no cut-off)."""
    return 1.0 / (ranks.min(axis=1) + 1.0)


def coverage(top_items: np.ndarray, num_items: int) -> float:
    """Share of the catalog that appears in at least one recommendation list."""
    return len(np.unique(top_items)) / num_items if num_items else 0.0
