"""Small datasets built in memory for tests."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from llmrec.data.schema import Catalog, Dataset, Interactions


def cyclic_dataset(num_users: int = 60, num_items: int = 20, length: int = 12, seed: int = 0) -> Dataset:
    """User u walks the catalog cyclically from a start item: the next item is always `current + 1` (mod n),
    so a sequential model can learn it exactly while popularity cannot."""
    rows = []
    for u in range(num_users):
        start = (u * 7 + seed) % num_items
        for step in range(length):
            rows.append({"user_id": f"u{u}", "item_id": f"i{(start + step) % num_items}", "timestamp": 1000 * step + u})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)],
                          "text": [f"item number {i}" for i in range(num_items)]})
    return Dataset("cyclic", Catalog(items), Interactions(pd.DataFrame(rows)))


def gap_dataset(num_users: int = 80, num_items: int = 24, length: int = 12, seed: int = 0) -> Dataset:
    """The step to a user's next item depends on how long they paused before the current one: +1 after a pause
    of a minute or less, +5 after a pause of two days. Items alone leave the next step a coin flip; the time
    gaps decide it."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        item, time, long_pause = int(rng.integers(num_items)), 1_700_000_000 + 977 * u, False
        for _ in range(length):
            rows.append({"user_id": f"u{u}", "item_id": f"i{item}", "timestamp": time})
            item = (item + (5 if long_pause else 1)) % num_items
            long_pause = bool(rng.integers(2))
            time += 2 * 86400 if long_pause else 45
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)],
                          "text": [f"item number {i}" for i in range(num_items)]})
    return Dataset("gaps", Catalog(items), Interactions(pd.DataFrame(rows)))


def topic_dataset(num_users: int = 80, num_topics: int = 4, items_per_topic: int = 40, length: int = 8,
                  seed: int = 0) -> Dataset:
    """User u stays within topic u % num_topics and visits its items in a random order: the next item's topic is
    that of the recent items, its identity a coin flip among the topic's unseen items. Item ids are
    `t<topic>-<j>`; `topic_text_vectors` gives them text vectors that carry the topic."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        topic = u % num_topics
        for step, j in enumerate(rng.permutation(items_per_topic)[:length]):
            rows.append({"user_id": f"u{u}", "item_id": f"t{topic}-{j}", "timestamp": 1000 * step + u})
    ids = [f"t{t}-{j}" for t in range(num_topics) for j in range(items_per_topic)]
    items = pd.DataFrame({"item_id": ids, "text": [f"topic {i.split('-')[0]} item {i}" for i in ids]})
    return Dataset("topics", Catalog(items), Interactions(pd.DataFrame(rows)))


def topic_text_vectors(item_ids: Sequence[str], dim: int = 24, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """[len(item_ids) + 1, dim] unit text vectors (row 0, padding, zero) for `topic_dataset` ids: the topic's
    random direction plus per-item noise, so items of one topic are close and those of others far apart."""
    rng = np.random.default_rng(seed)
    topics = [item_id.split("-")[0] for item_id in item_ids]
    centres = {topic: rng.normal(size=dim) for topic in sorted(set(topics))}
    vectors = np.stack([centres[t] / np.linalg.norm(centres[t]) + noise * rng.normal(size=dim) / np.sqrt(dim)
                        for t in topics])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.vstack([np.zeros((1, dim)), vectors]).astype(np.float32)
