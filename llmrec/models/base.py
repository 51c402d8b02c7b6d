"""The interface every recommender implements (after Cornac): build from the run's config, fit on a Split, score
every item for a batch of (user, history) queries, save and load."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence

import numpy as np
import torch

from llmrec.config import RunConfig
from llmrec.data.split import Split
from llmrec.errors import DataError

if TYPE_CHECKING:
    from llmrec.models.user_features import UserFeatures


class Scorer(Protocol):
    """Anything that scores all items for a batch of queries; what the evaluator and the index need."""

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Scores [batch, num_items + 1] (higher is better; column 0 is padding and is ignored)."""
        ...


class BuildContext(Protocol):
    """What a run offers a model it builds, beyond the model's config section (`llmrec.experiment.Experiment` is
    one)."""

    @property
    def split(self) -> Split:
        """The run's data split (catalog size, training sequences)."""
        ...

    @property
    def item_vectors(self) -> np.ndarray:
        """The catalog's text embeddings [num_items + 1, d], row 0 (padding) zero."""
        ...

    def user_features(self) -> "UserFeatures":
        """The interest model's per-user features (long-term vectors, context)."""
        ...

    def checkpoint_dir(self, name: str) -> Path:
        """Where model `name` keeps its training checkpoints."""
        ...


class Model(ABC):
    """Base class: `from_config(config, context)`, `fit(split)`, `score(users, histories)`, `save(folder)`,
    `from_state` (see `llmrec.models.registry.load_model`).

    `users` holds user indices of the Split (or -1 for a user the model has never seen); `histories` holds
    item-index sequences in chronological order. A model must score an unseen user from its history alone.
    Models with a network train and score on their section's `device`; `score` returns scores there.
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "Model":
        """A new, untrained model with the settings of its section of `config`."""

    def use_settings(self, config: RunConfig) -> "Model":
        """Apply the settings of `config` that need no retraining (such as the device) to this fitted model;
        returns it. Models without such settings are returned as they are."""
        return self

    @abstractmethod
    def fit(self, split: Split) -> "Model":
        """Learn from `split.train` (and use `split.valid` for early stopping where the model trains)."""

    @abstractmethod
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Scores [batch, num_items + 1] for every catalog item."""

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able hyper-parameters, tensors) that `from_state` turns back into the same model."""

    @classmethod
    @abstractmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "Model":
        """Rebuild a fitted model from `state()`, on the CPU (`use_settings` moves it)."""

    def save(self, folder: str | Path) -> Path:
        """Write `model.json` and `weights.pt` into `folder`."""
        folder = Path(folder)
        params, tensors = self.state()
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(tensors, folder / "weights.pt")
        (folder / "model.json").write_text(json.dumps({"model": self.name, "params": params}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Model":
        """A model written by `save`."""
        _, params, tensors = cls.read_saved(folder)
        return cls.from_state(params, tensors)

    @staticmethod
    def saved_name(folder: str | Path) -> str:
        """The name of the model saved in `folder` (from its `model.json`)."""
        meta_path = Path(folder) / "model.json"
        if not meta_path.is_file():
            raise DataError(f"no saved model in {folder} (model.json missing); train it first")
        return json.loads(meta_path.read_text())["model"]

    @staticmethod
    def read_saved(folder: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
        """(model name, params, tensors) from a folder written by `save`."""
        folder = Path(folder)
        name = Model.saved_name(folder)
        meta = json.loads((folder / "model.json").read_text())
        tensors = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        return name, meta["params"], tensors


def pad_histories(histories: Sequence[np.ndarray], max_len: int) -> torch.Tensor:
    """Left-pad (with 0) the last `max_len` items of each history into a [batch, max_len] LongTensor."""
    batch = torch.zeros(len(histories), max_len, dtype=torch.long)
    for row, history in enumerate(histories):
        tail = history[-max_len:]
        if len(tail):
            batch[row, max_len - len(tail):] = torch.tensor(tail, dtype=torch.long)
    return batch


def put_rows(table: torch.Tensor, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A copy of `table` with `rows` at `items` (item tables that grow while serving). Indices from `len(table)`
    on are new items: they must be the next indices, in order, and their rows are appended."""
    items = torch.as_tensor(items, dtype=torch.long)
    rows = torch.as_tensor(rows).to(dtype=table.dtype, device=table.device)
    new = items >= len(table)
    expected = torch.arange(len(table), len(table) + int(new.sum()))
    if not torch.equal(items[new].cpu(), expected):
        raise ValueError(f"new rows must take the next indices {expected.tolist()}, got {items[new].tolist()}")
    result = torch.cat([table, rows[new]])
    result[items[~new]] = rows[~new]
    return result
