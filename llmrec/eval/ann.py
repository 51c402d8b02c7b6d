"""How well the approximate (HNSW) item index agrees with exact search over the same vectors."""

from __future__ import annotations

import numpy as np

from llmrec.index.chroma_index import ItemIndex


def exact_similarity(queries: np.ndarray, items: np.ndarray, space: str) -> np.ndarray:
    """[n_queries, n_items] similarities as the index ranks them: cosine, inner product, or negative squared
    Euclidean distance (`l2`)."""
    queries = np.asarray(queries, dtype=np.float64)
    items = np.asarray(items, dtype=np.float64)
    if space == "cosine":
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        items = items / np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
    scores = queries @ items.T
    if space == "l2":
        scores = 2 * scores - (queries**2).sum(1, keepdims=True) - (items**2).sum(1)
    return scores


def ann_recall(index: ItemIndex, queries: np.ndarray, item_ids: list[str], item_vectors: np.ndarray,
               n: int = 100) -> float:
    """Mean over queries of |ANN top-n ∩ exact top-n| / n, where exact search ranks `item_vectors` (the vectors
    stored in `index` under `item_ids`) by the index's own similarity."""
    queries = np.asarray(queries, dtype=np.float32)
    if len(queries) == 0:
        raise ValueError("ann_recall needs at least one query")
    n = min(n, len(item_ids))
    scores = exact_similarity(queries, item_vectors, index.config.space)
    exact_top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    ids = np.asarray(item_ids, dtype=object)
    approximate = index.query(queries, n)
    overlaps = [len(set(ids[top]) & {item for item, _ in found}) for top, found in zip(exact_top, approximate)]
    return float(np.mean(overlaps)) / n
