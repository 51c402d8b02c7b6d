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


def intra_list_diversity(top_items: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Per list: the mean pairwise cosine distance (1 - cosine) between its items' vectors [num_items + 1, d]."""
    vectors = item_vectors[top_items]  # [cases, k, d]
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    k = top_items.shape[1]
    if k < 2:
        return np.zeros(len(top_items))
    similarity = np.einsum("ckd,cjd->ckj", vectors, vectors)
    off_diagonal = similarity.sum(axis=(1, 2)) - np.trace(similarity, axis1=1, axis2=2)
    return 1.0 - off_diagonal / (k * (k - 1))


def novelty(top_items: np.ndarray, popularity: np.ndarray, num_users: int) -> np.ndarray:
    """Per list: the mean self-information -log2(p) of its items, p = the share of users who interacted with
    the item in training (an item nobody chose counts as chosen once)."""
    share = np.maximum(popularity, 1) / max(1, num_users)
    return (-np.log2(share))[top_items].mean(axis=1)


def bootstrap_interval(values: np.ndarray, seed: int, level: float = 0.95,
                       resamples: int = 1000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-case `values` (cases resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        raise ValueError("a bootstrap interval needs at least one case")
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
