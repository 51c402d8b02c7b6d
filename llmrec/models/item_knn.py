"""Item-kNN (Sarwar et al. 2001; Deshpande & Karypis 2004): an item is scored by its similarity to the items
in the user's history, with cosine similarity on the item co-occurrence matrix, shrunk toward zero for items
with few interactions, and pruned to each item's top neighbours."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from llmrec.config import KNNConfig, RunConfig
from llmrec.data.split import Split
from llmrec.errors import ModelNotTrainedError
from llmrec.models.base import BuildContext, Model
from llmrec.models.interactions import interaction_matrix, to_torch

_ROW_CHUNK = 2048
"""Items whose similarity rows are made dense at once while pruning to the top neighbours."""


class ItemKNN(Model):
    """score(user, j) = sum over history items i of sim(i, j), sim = co(i, j) / (sqrt(n_i n_j) + shrink)."""

    name = "itemknn"

    def __init__(self, config: KNNConfig | None = None) -> None:
        self.config = config or KNNConfig()
        self.similarity: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "ItemKNN":
        return cls(config.knn)

    def fit(self, split: Split) -> "ItemKNN":
        matrix = interaction_matrix(split.train, split.num_items + 1)
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        co = (matrix.T @ matrix).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(counts)
        rows = []
        for start in range(0, co.shape[0], _ROW_CHUNK):
            block = co[start:start + _ROW_CHUNK].toarray()
            block /= norms[start:start + _ROW_CHUNK, None] * norms[None, :] + self.config.shrink
            rows.append(sp.csr_matrix(_keep_top(block, self.config.neighbors)))
        self.similarity = to_torch(sp.vstack(rows))
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if self.similarity is None:
            raise ModelNotTrainedError("itemknn: call fit() first")
        history = torch.as_tensor(interaction_matrix(histories, self.similarity.shape[0]).toarray())
        return torch.sparse.mm(self.similarity.t(), history.T).T  # history @ similarity

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return ({"neighbors": self.config.neighbors, "shrink": self.config.shrink, "size": self.similarity.shape[0]},
                {"indices": self.similarity.indices(), "values": self.similarity.values()})

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "ItemKNN":
        model = cls(KNNConfig(neighbors=params["neighbors"], shrink=params["shrink"]))
        size = params["size"]
        model.similarity = torch.sparse_coo_tensor(tensors["indices"], tensors["values"], (size, size),
                                                   check_invariants=True).coalesce()
        return model


def _keep_top(block: np.ndarray, k: int) -> np.ndarray:
    """Zero all but the k largest positive entries of each row."""
    if block.shape[1] > k:
        threshold = np.partition(block, -k, axis=1)[:, -k][:, None]
        block = np.where(block >= threshold, block, 0.0)
    return np.where(block > 0, block, 0.0).astype(np.float32)
