"""Small datasets built in memory for tests."""

from __future__ import annotations

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
