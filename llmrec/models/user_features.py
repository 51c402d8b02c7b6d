"""UserFeatures: the interest model's feature store, the per-user inputs it reads beside a history (long-term
vector, user-level context, interaction times), kept apart from the model's weights.

The model holds the store it was given (`InterestModel.features`) and reads rows from it for each query; serving
adds users (`add_user`) and swaps refreshed long-term vectors in (`set_long_term`). The store is saved to its
own file (`save` / `load`: safetensors, with the context vocabulary as metadata).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from llmrec.errors import DataError
from llmrec.models.time_features import TimeLookup, pad_time_features, time_features

FILENAME = "users.safetensors"
"""The store's file name in a model folder (beside `weights.pt`)."""


@dataclass
class UserFeatures:
    """Per-user inputs, indexed by the split's user index."""

    profiles: np.ndarray
    """[num_users, P] long-term vectors (embedded profile text, or mean long-term item vector)."""
    has_profile: np.ndarray
    """[num_users] False where the user has no long-term part."""
    context: np.ndarray
    """[num_users, F] category ids of user-level context (demographics, usual device), 0 = unknown."""
    context_sizes: list[int]
    context_names: list[str] = dataclasses.field(default_factory=list)
    """Each context feature's name (a user attribute, or `usual_<column>` for an interaction column)."""
    context_values: list[list[str]] = dataclasses.field(default_factory=list)
    """Each feature's values; value `v` has category id `context_values[f].index(v) + 1`."""
    times: TimeLookup | None = None
    """The timestamps of the users' known interactions (for `interest.time_features`)."""

    num_users: int = dataclasses.field(init=False)
    """Rows in use; the arrays may hold spare rows for users added while serving (`add_user`)."""

    def __post_init__(self) -> None:
        self.num_users = len(self.has_profile)

    @property
    def profile_dim(self) -> int:
        """P, the width of a long-term vector."""
        return int(self.profiles.shape[1])

    def add_user(self) -> int:
        """A row for a user the model was not trained with (no profile, unknown context); returns its index.
        The arrays grow by half their size at a time, so adding users one by one stays cheap."""
        if self.num_users == len(self.has_profile):
            extra = max(16, len(self.has_profile) // 2)
            self.profiles = np.vstack([self.profiles, np.zeros((extra, self.profile_dim), self.profiles.dtype)])
            self.has_profile = np.concatenate([self.has_profile, np.zeros(extra, dtype=bool)])
            self.context = np.vstack([self.context, np.zeros((extra, self.context.shape[1]), self.context.dtype)])
        self.num_users += 1
        return self.num_users - 1

    def set_long_term(self, user: int, vector: np.ndarray | None) -> None:
        """Replace the user's long-term vector; None: the user has no long-term part (the input is masked)."""
        self.profiles[user] = 0.0 if vector is None else vector
        self.has_profile[user] = vector is not None

    def context_ids(self, user: int, values: dict[str, str]) -> np.ndarray:
        """[F] the user's context ids with request `values` (keyed by column, e.g. `device`) in place of the
        user's usual ones; a value never seen in training becomes 0 (unknown)."""
        ids = self.context[user].copy() if user >= 0 else np.zeros(len(self.context_sizes), dtype=np.int64)
        by_name = {name: f for f, name in enumerate(self.context_names)}
        for key, value in values.items():
            feature = by_name.get(key, by_name.get(f"usual_{key}"))
            if feature is None:
                known = ", ".join(n.removeprefix("usual_") for n in self.context_names) or "none"
                raise DataError(f"unknown context key {key!r}; this model knows: {known}")
            vocabulary = self.context_values[feature]
            ids[feature] = vocabulary.index(value) + 1 if value in vocabulary else 0
        return ids

    def rows(self, users: np.ndarray, profiles: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(profiles, has_profile, context) for split user indices; -1 (an unknown user) gets none of them.
        `profiles` [B, P] replaces the stored long-term vectors, all of them used (e.g. stated interests)."""
        users = np.asarray(users)
        known = users >= 0
        safe = np.where(known, users, 0)
        context = torch.as_tensor(self.context[safe] * known[:, None], dtype=torch.long)
        if profiles is not None:
            if profiles.shape != (len(users), self.profiles.shape[1]):
                raise ValueError(f"profiles must be [{len(users)}, {self.profiles.shape[1]}], got "
                                 f"{list(profiles.shape)}")
            return profiles.float(), torch.ones(len(users), dtype=torch.bool), context
        stored = torch.as_tensor(self.profiles[safe] * known[:, None], dtype=torch.float32)
        has_profile = torch.as_tensor(self.has_profile[safe] & known)
        return stored, has_profile, context

    def time_rows(self, users: np.ndarray, histories: Sequence[np.ndarray], max_len: int) -> torch.Tensor:
        """[B, max_len, 3] time feature ids of the histories' last `max_len` items (0 where not known)."""
        lookup = self.times or TimeLookup([], [])
        return pad_time_features([time_features(lookup.history_times(int(u), h)) for u, h in zip(users, histories)],
                                 max_len)

    def save(self, path: str | Path) -> Path:
        """Write the rows in use (and the interaction times) to a safetensors file at `path`."""
        used = self.num_users
        arrays = {"profiles": self.profiles[:used], "has_profile": self.has_profile[:used],
                  "context": self.context[:used]}
        if self.times is not None:
            arrays.update({k: v.numpy() for k, v in self.times.to_tensors().items()})
        vocabulary = {"sizes": self.context_sizes, "names": self.context_names, "values": self.context_values}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, path,
                  metadata={"context": json.dumps(vocabulary)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "UserFeatures":
        """A store written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"no user feature store at {path}")
        with safe_open(str(path), framework="numpy") as handle:
            vocabulary = json.loads((handle.metadata() or {})["context"])
        arrays = load_file(path)
        times = (TimeLookup.from_tensors({k: torch.from_numpy(v) for k, v in arrays.items()})
                 if "time_lengths" in arrays else None)
        return cls(arrays["profiles"], arrays["has_profile"], arrays["context"], list(vocabulary["sizes"]),
                   list(vocabulary["names"]), [list(v) for v in vocabulary["values"]], times)
