"""k-core filtering: keep users and items with at least k interactions, repeated until nothing changes."""

from __future__ import annotations

import logging
from dataclasses import replace

from llmrec.data.schema import ITEM_ID, USER_ID, Dataset, Interactions

log = logging.getLogger(__name__)


def k_core(dataset: Dataset, k: int) -> Dataset:
    """Return the k-core of `dataset`; catalog items removed by the filter leave the catalog too.

    Items that never had an interaction are kept (they are cold items, recommendable from text).
    """
    if k <= 1:
        return dataset
    events = dataset.interactions.events
    while True:
        user_counts = events[USER_ID].map(events[USER_ID].value_counts())
        item_counts = events[ITEM_ID].map(events[ITEM_ID].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            break
        events = events[keep]
    removed_items = set(dataset.interactions.events[ITEM_ID]) - set(events[ITEM_ID])
    n_rows = len(dataset.interactions) - len(events)
    if n_rows == 0:
        return dataset
    log.info("%d-core removed %d interactions, %d users and %d items", k, n_rows,
             dataset.interactions.num_users() - events[USER_ID].nunique(), len(removed_items))
    items = dataset.catalog.items
    catalog = replace(dataset.catalog, items=items[~items[ITEM_ID].isin(removed_items)])
    interactions = Interactions(events, dataset.interactions.context_columns, dataset.interactions.source)
    notes = {**dataset.notes, "k_core_removed_interactions": n_rows, "k_core_removed_items": len(removed_items)}
    return replace(dataset, catalog=catalog, interactions=interactions, notes=notes)
