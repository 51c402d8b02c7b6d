"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from llmrec.config import RunConfig
from llmrec.data.split import Split
from llmrec.errors import ModelNotTrainedError
from llmrec.models.base import BuildContext, Model


class Popularity(Model):
    """Scores an item by its number of training interactions."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "Popularity":
        return cls()

    def fit(self, split: Split) -> "Popularity":
        self.counts = torch.as_tensor(split.train_popularity(), dtype=torch.float32)
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if self.counts is None:
            raise ModelNotTrainedError("popularity: call fit() first")
        return self.counts.expand(len(histories), -1)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {"counts": self.counts}

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "Popularity":
        model = cls()
        model.counts = tensors["counts"]
        return model
