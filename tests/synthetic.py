"""Small datasets built in memory for tests."""

from __future__ import annotations

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
