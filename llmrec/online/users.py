"""The serving-time view of users: every known user's full history (the dataset's interactions plus the new
events), users who arrived after training, and how many new events each user has."""

from __future__ import annotations

import threading

import numpy as np

from llmrec.data.split import Split
from llmrec.errors import UnknownIdError
from llmrec.models.user_features import UserFeatures


class UserBook:
    """Histories by user id. A user the model was trained with keeps its split index (its profile and context
    rows in the feature store `features`); a new user gets a fresh row there (no profile, unknown context).
    Thread-safe."""

    def __init__(self, split: Split, features: UserFeatures) -> None:
        self._split = split
        self._features = features
        self._index = {str(u): i for i, u in enumerate(split.user_ids)}
        self._histories: dict[int, list[int]] = {}
        self._added: dict[int, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._index)

    def index(self, user_id: str) -> int:
        """The user's row; UnknownIdError for a user with neither training data nor events."""
        try:
            return self._index[str(user_id)]
        except KeyError:
            raise UnknownIdError(f"unknown user id {user_id!r}; send their interactions to /events (or "
                                 "add_interaction) first, or recommend from an explicit history") from None

    def history(self, user: int) -> np.ndarray:
        """Every interaction of the user in order: the dataset's, then the new ones."""
        with self._lock:
            extra = self._histories.get(user)
            base = self._split.sequences[user] if user < self._split.num_users else np.zeros(0, dtype=np.int64)
            return np.concatenate([base, np.asarray(extra, dtype=np.int64)]) if extra else base

    def add(self, user_id: str, item: int, timestamp: float) -> tuple[int, int]:
        """Append one interaction at `timestamp` (Unix seconds), creating the user when new; returns (user row,
        how many interactions were added for the user so far, this one included)."""
        with self._lock:
            user = self._index.get(str(user_id))
            if user is None:
                user = self._features.add_user()
                self._index[str(user_id)] = user
            self._histories.setdefault(user, []).append(item)
            if self._features.times is not None:
                self._features.times.append(user, item, timestamp)
            self._added[user] = self._added.get(user, 0) + 1
            return user, self._added[user]
