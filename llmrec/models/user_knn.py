"""User-kNN (Herlocker et al. 1999): an item is scored by how many of the user's most similar training users
chose it, weighted by their similarity (cosine on the interaction vectors, shrunk toward zero for short
histories)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from llmrec.config import KNNConfig, RunConfig
from llmrec.data.split import Split
from llmrec.errors import ModelNotTrainedError
from llmrec.models.base import BuildContext, Model
from llmrec.models.interactions import interaction_matrix, to_torch


class UserKNN(Model):
    """score(user, j) = sum over the `neighbors` most similar training users v of sim(user, v) * [v chose j],
    sim = overlap / (sqrt(n_user n_v) + shrink). The query history is compared with every training history
    (a user is never their own neighbour)."""

    name = "userknn"

    def __init__(self, config: KNNConfig | None = None) -> None:
        self.config = config or KNNConfig()
        self.train: torch.Tensor | None = None
        self.train_norms: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "UserKNN":
        return cls(config.knn)

    def fit(self, split: Split) -> "UserKNN":
        matrix = interaction_matrix(split.train, split.num_items + 1)
        self.train = to_torch(matrix)
        self.train_norms = torch.as_tensor(np.sqrt(np.asarray(matrix.sum(axis=1)).ravel()), dtype=torch.float32)
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if self.train is None or self.train_norms is None:
            raise ModelNotTrainedError("userknn: call fit() first")
        query = torch.as_tensor(interaction_matrix(histories, self.train.shape[1]).toarray())
        overlap = torch.sparse.mm(self.train, query.T).T  # [B, train users]
        query_norms = torch.as_tensor([np.sqrt(len(set(h.tolist()))) for h in histories], dtype=torch.float32)
        similarity = overlap / (query_norms[:, None] * self.train_norms[None, :] + self.config.shrink)
        users = torch.as_tensor(np.asarray(users), dtype=torch.long)
        known = users >= 0
        similarity[known.nonzero().squeeze(1), users[known]] = 0.0
        k = min(self.config.neighbors, similarity.shape[1])
        top = similarity.topk(k, dim=1)
        weights = torch.zeros_like(similarity).scatter_(1, top.indices, top.values)
        return torch.sparse.mm(self.train.T, weights.T).T

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return ({"neighbors": self.config.neighbors, "shrink": self.config.shrink, "shape": list(self.train.shape)},
                {"indices": self.train.indices(), "values": self.train.values(), "norms": self.train_norms})

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "UserKNN":
        model = cls(KNNConfig(neighbors=params["neighbors"], shrink=params["shrink"]))
        model.train = torch.sparse_coo_tensor(tensors["indices"], tensors["values"], params["shape"],
                                              check_invariants=True).coalesce()
        model.train_norms = tensors["norms"]
        return model
