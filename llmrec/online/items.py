"""The serving-time view of items: every item id with its index, text and text vector — the dataset's catalog, then
the items added while serving (`llmrec.online.item_log`) — and which items are deleted."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from llmrec.errors import ConflictError, DeletedItemError, UnknownIdError
from llmrec.online.item_log import Action, ItemChange


class ItemBook:
    """Items by id. Catalog items keep their split index (1..catalog_size, 0 is padding); an added item takes the
    next index. Ids stay stable: a deleted item keeps its index and row and is only left out of recommendations.
    Items added while serving may be updated; catalog items come from the dataset (change them there).

    `item_index` / `item_id` read like `Split`'s, so retrieval maps index results through either."""

    def __init__(self, item_ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray) -> None:
        """`item_ids` and `texts` of the catalog in split order; `vectors` [len + 1, dim] their text vectors
        (row 0 padding)."""
        if len(vectors) != len(item_ids) + 1 or len(texts) != len(item_ids):
            raise ValueError(f"{len(item_ids)} item ids, {len(texts)} texts and {len(vectors)} vector rows "
                             "(ids + 1 with padding) do not match")
        self.catalog_size = len(item_ids)
        self._ids = [""] + [str(i) for i in item_ids]
        self._index = {item_id: index for index, item_id in enumerate(self._ids) if index}
        self.texts = [""] + [str(t) for t in texts]
        """Each item's text (what the encoder embedded), by index."""
        self._vectors = np.array(vectors, dtype=np.float32)  # grows by half its size at a time
        self._deleted: set[int] = set()

    def __len__(self) -> int:
        """Rows, padding included (as the model's item tables have)."""
        return len(self._ids)

    @property
    def vectors(self) -> np.ndarray:
        """[len(self), dim] every item's text vector (row 0 padding)."""
        return self._vectors[:len(self)]

    @property
    def deleted(self) -> np.ndarray:
        """Indices of the deleted items, sorted."""
        return np.array(sorted(self._deleted), dtype=np.int64)

    @property
    def added(self) -> list[int]:
        """Indices of the items added while serving (deleted ones too), in the order they were added."""
        return list(range(self.catalog_size + 1, len(self)))

    def item_index(self, item_id: str) -> int:
        """The item's index (a deleted item's too); UnknownIdError for an id never seen."""
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise UnknownIdError(f"unknown item id {item_id!r}") from None

    def live_index(self, item_id: str) -> int:
        """The index of an item that is not deleted; DeletedItemError for a deleted one."""
        index = self.item_index(item_id)
        if index in self._deleted:
            raise DeletedItemError(f"item {item_id!r} was deleted; it can no longer be recommended or interacted "
                                   "with")
        return index

    def item_id(self, index: int) -> str:
        return self._ids[index]

    def check(self, action: Action, item_id: str) -> int:
        """The index `action` would change (an `add`: the index the item would get); ConflictError for an `add`
        of a known id (deleted ones too: ids are not reused) or an `update` of a catalog item, UnknownIdError /
        DeletedItemError for an `update` or `delete` of an id that is not a live item."""
        if action == "add":
            if item_id in self._index:
                gone = " (deleted; ids are not reused)" if self._index[item_id] in self._deleted else ""
                raise ConflictError(f"item {item_id!r} already exists{gone}; change it with an update instead")
            return len(self)
        index = self.live_index(item_id)
        if action == "update" and index <= self.catalog_size:
            raise ConflictError(f"item {item_id!r} comes from the dataset's catalog; only items added while "
                                "serving can be updated (change the catalog and retrain)")
        return index

    def apply(self, change: ItemChange, vector: np.ndarray) -> int:
        """Apply one logged change (`vector`: the embedding of its text; unused for a `delete`) after `check`;
        returns the item's index."""
        index = self.check(change.action, change.item_id)
        if change.action == "add":
            self._ids.append(change.item_id)
            self._index[change.item_id] = index
            self.texts.append(change.text)
            if index == len(self._vectors):
                spare = np.zeros((max(16, len(self._vectors) // 2), self._vectors.shape[1]), dtype=np.float32)
                self._vectors = np.vstack([self._vectors, spare])
        elif change.action == "update":
            self.texts[index] = change.text
        else:
            self._deleted.add(index)
            return index
        self._vectors[index] = vector
        return index
