"""Time inputs of the interest model, from interaction timestamps: for every item of a sequence the bucketed gap
since the item before it (short-term encoder) and the hour of day and day of week it happened (context).

Feature ids are 0 where unknown (padding, no timestamp, an anonymous history given without its user); the
first item of a history gets its own gap bucket. Timestamps are Unix seconds, read in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

UNKNOWN = -1
"""A timestamp that is not known."""
GAP_EDGES_S = np.array([60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400, 90 * 86400,
                        365 * 86400])
"""Upper edges of the gap buckets: a minute, ten minutes, an hour, six hours, a day, three days, a week, a month,
three months, a year (and beyond)."""
FIRST_ITEM = 1
"""Gap id of a history's first item; gaps within the history are FIRST_ITEM + 1 + bucket."""
NUM_GAPS = FIRST_ITEM + 1 + len(GAP_EDGES_S) + 1
NUM_HOURS = 24 + 1
NUM_WEEKDAYS = 7 + 1


def time_features(times: np.ndarray) -> np.ndarray:
    """[len(times), 3] (gap, hour, weekday) ids of one chronological history's timestamps (UNKNOWN -> 0)."""
    times = np.asarray(times, dtype=np.int64)
    known = times != UNKNOWN
    features = np.zeros((len(times), 3), dtype=np.int64)
    if not len(times):
        return features
    gaps = np.diff(times)
    both_known = known[1:] & known[:-1]
    features[0, 0] = FIRST_ITEM if known[0] else 0
    features[1:, 0] = np.where(both_known, FIRST_ITEM + 1 + np.searchsorted(GAP_EDGES_S, np.maximum(gaps, 0),
                                                                             side="right"), 0)
    days, seconds = np.divmod(times, 86400)
    features[:, 1] = np.where(known, seconds // 3600 + 1, 0)
    features[:, 2] = np.where(known, (days + 3) % 7 + 1, 0)  # 1970-01-01 was a Thursday; Monday = 1
    return features


def pad_time_features(features: Sequence[np.ndarray], max_len: int) -> torch.Tensor:
    """[B, max_len, 3]: the last `max_len` rows of each history's `time_features`, left-padded with 0 like
    `pad_histories` (compute the features on the whole history, so the first kept item keeps its gap)."""
    batch = torch.zeros(len(features), max_len, 3, dtype=torch.long)
    for row, history_features in enumerate(features):
        tail = history_features[-max_len:]
        if len(tail):
            batch[row, max_len - len(tail):] = torch.from_numpy(tail)
    return batch


@dataclass
class TimeLookup:
    """Each known user's interactions and their timestamps, to find the timestamps of a history the model is
    asked about (an evaluation history is a prefix of the user's sequence, or a subsequence when items were held
    out; interactions the lookup does not know get UNKNOWN). Serving appends new events (`append`)."""

    sequences: list[np.ndarray]
    timestamps: list[np.ndarray]

    def history_times(self, user: int, history: np.ndarray) -> np.ndarray:
        """Timestamps of `history` (user index `user`, -1 for a user the lookup does not know)."""
        history = np.asarray(history)
        times = np.full(len(history), UNKNOWN, dtype=np.int64)
        if not 0 <= user < len(self.sequences):
            return times
        sequence, stamps = self.sequences[user], self.timestamps[user]
        prefix = min(len(history), len(sequence))
        if np.array_equal(history[:prefix], sequence[:prefix]):
            times[:prefix] = stamps[:prefix]
            return times
        position = 0  # match the history as a subsequence, item by item
        for row, item in enumerate(history):
            found = np.flatnonzero(sequence[position:] == item)
            if len(found):
                position += found[0]
                times[row] = stamps[position]
                position += 1
        return times

    def append(self, user: int, item: int, timestamp: float) -> None:
        """Record a new interaction of user index `user` (a user added while serving gets a row)."""
        while len(self.sequences) <= user:
            self.sequences.append(np.zeros(0, dtype=np.int64))
            self.timestamps.append(np.zeros(0, dtype=np.int64))
        self.sequences[user] = np.append(self.sequences[user], item)
        self.timestamps[user] = np.append(self.timestamps[user], int(timestamp))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensors for a model's weights file (see `from_tensors`)."""
        lengths = torch.as_tensor([len(s) for s in self.sequences], dtype=torch.long)
        return {"time_lengths": lengths,
                "time_items": torch.as_tensor(np.concatenate(self.sequences or [np.array([], np.int64)])),
                "time_stamps": torch.as_tensor(np.concatenate(self.timestamps or [np.array([], np.int64)]))}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "TimeLookup":
        bounds = np.concatenate([[0], np.cumsum(tensors["time_lengths"].numpy())])
        items, stamps = tensors["time_items"].numpy(), tensors["time_stamps"].numpy()
        return cls([items[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
                   [stamps[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
