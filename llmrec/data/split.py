"""The modelling view of a dataset: integer item indices and train / validation / test cases.

Item index 0 is padding; catalog item `i` (0-based row) has index `i + 1`, so a score matrix has one column
per catalog item plus the padding column. Every catalog item is indexed, including items that never appear in
training (cold items, recommendable from their text).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Dataset
from llmrec.errors import DataError, UnknownIdError

log = logging.getLogger(__name__)
PADDING = 0


@dataclass(frozen=True)
class EvalCases:
    """Questions for the evaluator: given `histories[i]` of user `users[i]`, rank `targets[i]` high."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> "EvalCases":
        return EvalCases(self.users[rows], [self.histories[i] for i in rows], [self.targets[i] for i in rows])


@dataclass(frozen=True)
class Split:
    """Training sequences per user, plus validation and test cases (all as item indices)."""

    dataset: str
    protocol: str
    item_ids: np.ndarray
    user_ids: np.ndarray
    sequences: list[np.ndarray]
    """Every known interaction per user, in order (what a deployed model sees when it recommends)."""
    train: list[np.ndarray]
    train_timestamps: list[np.ndarray] | None
    valid: EvalCases
    test: EvalCases
    timestamps: list[np.ndarray] | None = None
    """Unix seconds of `sequences`, where the dataset has timestamps."""
    _item_index: dict[str, int] = field(init=False, repr=False, compare=False)
    _user_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_item_index", {str(v): i + 1 for i, v in enumerate(self.item_ids)})
        object.__setattr__(self, "_user_index", {str(v): i for i, v in enumerate(self.user_ids)})

    @property
    def num_items(self) -> int:
        """Catalog size (score matrices have num_items + 1 columns, column 0 is padding)."""
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def item_index(self, item_id: str) -> int:
        try:
            return self._item_index[str(item_id)]
        except KeyError:
            raise UnknownIdError(f"unknown item id {item_id!r}") from None

    def user_index(self, user_id: str) -> int:
        try:
            return self._user_index[str(user_id)]
        except KeyError:
            raise UnknownIdError(f"unknown user id {user_id!r}") from None

    def item_id(self, index: int) -> str:
        return str(self.item_ids[index - 1])

    def train_popularity(self) -> np.ndarray:
        """Interactions per item index in the training sequences (length num_items + 1)."""
        counts = np.zeros(self.num_items + 1, dtype=np.int64)
        if self.train:
            np.add.at(counts, np.concatenate(self.train), 1)
        counts[PADDING] = 0
        return counts


def save_split(split: Split, path: str | Path) -> Path:
    """Write the split (ids, sequences, timestamps, training sequences, evaluation cases) as one `.npz` file of
    plain arrays (no pickled objects), which `load_split` reads back."""
    arrays: dict[str, np.ndarray] = {"names": np.array([split.dataset, split.protocol]),
                                     "item_ids": np.asarray(split.item_ids, dtype=str),
                                     "user_ids": np.asarray(split.user_ids, dtype=str)}
    ragged = {"sequences": split.sequences, "train": split.train, "timestamps": split.timestamps,
              "train_timestamps": split.train_timestamps}
    for name, cases in (("valid", split.valid), ("test", split.test)):
        arrays[f"{name}_users"] = np.asarray(cases.users, dtype=np.int64)
        ragged.update({f"{name}_histories": cases.histories, f"{name}_targets": cases.targets})
    for name, rows in ragged.items():
        if rows is not None:
            arrays[f"{name}_lengths"] = np.array([len(r) for r in rows], dtype=np.int64)
            arrays[name] = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows] or [np.zeros(0, np.int64)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        np.savez(out, **arrays)
    return path


def load_split(path: str | Path) -> Split:
    """A split written by `save_split`."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = dict(stored)

    def rows(name: str) -> list[np.ndarray] | None:
        if f"{name}_lengths" not in arrays:
            return None
        bounds = np.concatenate([[0], np.cumsum(arrays[f"{name}_lengths"])])
        return [arrays[name][a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def cases(name: str) -> EvalCases:
        return EvalCases(arrays[f"{name}_users"], rows(f"{name}_histories") or [], rows(f"{name}_targets") or [])

    dataset, protocol = (str(name) for name in arrays["names"])
    return Split(dataset, protocol, arrays["item_ids"].astype(object), arrays["user_ids"].astype(object),
                 rows("sequences") or [], rows("train") or [], rows("train_timestamps"), cases("valid"),
                 cases("test"), rows("timestamps"))


def make_split(dataset: Dataset, protocol: str = "leave-one-out", valid_fraction: float = 0.1,
               test_fraction: float = 0.1) -> Split:
    """Split by `leave-one-out` (per user, by order) or `temporal` (global time cut-offs)."""
    if protocol == "leave-one-out":
        return _leave_one_out(dataset)
    if protocol == "temporal":
        return _temporal(dataset, valid_fraction, test_fraction)
    raise DataError(f"unknown split protocol {protocol!r}; use leave-one-out or temporal")


def hold_out_items(split: Split, fraction: float, seed: int = 0) -> Split:
    """Make `fraction` of the items seen in training cold: remove every interaction with them from the training
    sequences and from the histories of evaluation cases (targets are kept), so a model can only know them by
    their text. The evaluator's `cold-items` group then measures exactly these cases."""
    if not 0 < fraction < 1:
        raise DataError(f"cold item fraction must be between 0 and 1, got {fraction}")
    seen = np.flatnonzero(split.train_popularity())
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(seen, size=max(1, round(fraction * len(seen))), replace=False))

    def keep_warm(items: np.ndarray) -> np.ndarray:
        return items[~np.isin(items, cold)]

    train = [keep_warm(s) for s in split.train]
    train_ts = ([t[~np.isin(s, cold)] for s, t in zip(split.train, split.train_timestamps)]
                if split.train_timestamps is not None else None)
    removed = sum(len(a) - len(b) for a, b in zip(split.train, train))
    log.info("held out %d of %d items as cold: %d training interactions removed", len(cold), len(seen), removed)

    def without_cold(cases: EvalCases) -> EvalCases:
        return EvalCases(cases.users, [keep_warm(h) for h in cases.histories], cases.targets)

    return dataclasses.replace(split, train=train, train_timestamps=train_ts, valid=without_cold(split.valid),
                               test=without_cold(split.test))


def _indexed_sequences(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray] | None]:
    item_ids = dataset.catalog.ids
    index = {v: i + 1 for i, v in enumerate(item_ids)}
    events = dataset.interactions.events  # sorted by user, then position
    item_idx = events[ITEM_ID].map(index).to_numpy(dtype=np.int64, copy=True)
    users, starts = np.unique(events[USER_ID].to_numpy(), return_index=True)
    order = np.argsort(starts)
    users, starts = users[order], starts[order]
    bounds = np.append(starts, len(events))
    sequences = [item_idx[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    timestamps = None
    if dataset.interactions.has_timestamps:
        ts = events[TIMESTAMP].to_numpy(dtype=np.int64, copy=True)
        timestamps = [ts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return item_ids, users, sequences, timestamps


def _leave_one_out(dataset: Dataset) -> Split:
    """Last item = test, second-to-last = validation, the rest = training. Users with fewer than 3
    interactions are kept for training only (counted in the log)."""
    item_ids, users, sequences, timestamps = _indexed_sequences(dataset)
    train, valid_rows, test_rows = [], [], []
    for u, seq in enumerate(sequences):
        if len(seq) >= 3:
            train.append(seq[:-2])
            valid_rows.append(u)
            test_rows.append(u)
        else:
            train.append(seq)
    n_short = len(sequences) - len(valid_rows)
    if n_short:
        log.warning("%d user(s) with fewer than 3 interactions are used for training only", n_short)
    if not test_rows:
        raise DataError(f"{dataset.name}: no user has 3 or more interactions; leave-one-out needs them")
    valid = EvalCases(np.array(valid_rows), [train[u] for u in valid_rows],
                      [sequences[u][-2:-1] for u in valid_rows])
    test = EvalCases(np.array(test_rows), [sequences[u][:-1] for u in test_rows],
                     [sequences[u][-1:] for u in test_rows])
    train_ts = [t[: len(s)] for t, s in zip(timestamps, train)] if timestamps else None
    return Split(dataset.name, "leave-one-out", item_ids, users, sequences, train, train_ts, valid, test,
                 timestamps)


def _temporal(dataset: Dataset, valid_fraction: float, test_fraction: float) -> Split:
    """Global cut-offs by time: events after the test cut-off are test targets, those between the validation
    and test cut-offs validation targets; histories are everything before the respective cut-off."""
    if not dataset.interactions.has_timestamps:
        raise DataError(f"{dataset.name}: the temporal split needs timestamps; use leave-one-out")
    if not (0 < valid_fraction and 0 < test_fraction and valid_fraction + test_fraction < 1):
        raise DataError("temporal split fractions must be positive and sum to less than 1")
    item_ids, users, sequences, timestamps = _indexed_sequences(dataset)
    all_ts = np.concatenate(timestamps)
    t_valid, t_test = np.quantile(all_ts, [1 - (valid_fraction + test_fraction), 1 - test_fraction])
    train, train_ts = [], []
    cases = {"valid": ([], [], []), "test": ([], [], [])}
    for u, (seq, ts) in enumerate(zip(sequences, timestamps)):
        before_valid, before_test = ts < t_valid, ts < t_test
        train.append(seq[before_valid])
        train_ts.append(ts[before_valid])
        for name, history, target in (("valid", seq[before_valid], seq[before_test & ~before_valid]),
                                      ("test", seq[before_test], seq[~before_test])):
            if len(history) and len(target):
                rows, histories, targets = cases[name]
                rows.append(u)
                histories.append(history)
                targets.append(np.unique(target))
    if not cases["test"][0]:
        raise DataError(f"{dataset.name}: no user has both history and events after the test cut-off")
    valid, test = (EvalCases(np.array(r, dtype=np.int64), h, t) for r, h, t in (cases["valid"], cases["test"]))
    return Split(dataset.name, "temporal", item_ids, users, sequences, train, train_ts, valid, test, timestamps)
