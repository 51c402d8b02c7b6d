"""Text-kNN baseline: the user is the mean of their history's item text embeddings; items are ranked by
similarity to it. Needs no training and recommends cold items as readily as popular ones."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from llmrec.config import RunConfig
from llmrec.data.split import Split
from llmrec.models.base import BuildContext, Model


class TextKNN(Model):
    """Scores = item_vectors @ mean(history item vectors). `item_vectors` is [num_items + 1, d], row 0 padding,
    L2-normalised rows (so scores are proportional to cosine similarity)."""

    name = "text-knn"

    def __init__(self, item_vectors: np.ndarray | torch.Tensor) -> None:
        self.item_vectors = torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32)

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "TextKNN":
        return cls(context.item_vectors)

    def fit(self, split: Split) -> "TextKNN":
        return self

    def user_vectors(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Mean history item vector per query (zero for an empty history)."""
        vectors = torch.zeros(len(histories), self.item_vectors.shape[1])
        for row, history in enumerate(histories):
            if len(history):
                vectors[row] = self.item_vectors[torch.as_tensor(history, dtype=torch.long)].mean(0)
        return vectors

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return self.user_vectors(histories) @ self.item_vectors.T

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {"item_vectors": self.item_vectors}

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "TextKNN":
        return cls(tensors["item_vectors"])
