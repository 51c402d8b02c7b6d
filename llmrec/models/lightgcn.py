"""LightGCN (He et al., SIGIR 2020): user and item ID embeddings propagated over the symmetrically normalised
user-item graph of training interactions (no weights, no non-linearity), averaged over layers, scored by dot
product. Trained here with sampled softmax over uniform negatives, like the other models in llmrec."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from llmrec.config import EvalConfig, LightGCNConfig, RunConfig
from llmrec.data.split import Split
from llmrec.device import resolve_device
from llmrec.errors import ModelNotTrainedError
from llmrec.models.base import BuildContext, Model
from llmrec.models.interactions import interaction_matrix, to_torch
from llmrec.train.losses import sampled_softmax_loss
from llmrec.train.loop import Trainer, TrainingReport, checkpoint_fingerprint, seed_everything


def normalised_graph(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph with users first, then items (`train` is users x items)."""
    users, items = train.shape
    adjacency = sp.bmat([[None, train], [train.T, None]], format="csr")
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = np.power(degree, -0.5, where=degree > 0, out=np.zeros_like(degree))
    return to_torch(sp.diags(scale) @ adjacency @ sp.diags(scale))


class LightGCNNet(nn.Module):
    """Ego embeddings of users and items, and the layer-averaged propagation over `graph`."""

    def __init__(self, num_users: int, num_items: int, graph: torch.Tensor, config: LightGCNConfig) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_layers = config.num_layers
        self.embedding = nn.Embedding(num_users + num_items, config.hidden_size)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.register_buffer("graph", graph, persistent=False)  # moves with the network, is not saved

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors [U, d], item vectors [I, d]) after propagation."""
        layer = self.embedding.weight
        total = layer
        for _ in range(self.num_layers):
            layer = torch.sparse.mm(self.graph, layer)
            total = total + layer
        mean = total / (self.num_layers + 1)
        return mean[:self.num_users], mean[self.num_users:]


class LightGCN(Model):
    """Graph collaborative filtering baseline. A user the graph does not know (index -1) is represented by the
    mean of their history items' vectors. A fitted model keeps (and saves) only the propagated vectors."""

    name = "lightgcn"

    def __init__(self, config: LightGCNConfig | None = None, seed: int = 42,
                 checkpoint_dir: str | Path | None = None) -> None:
        self.config = config or LightGCNConfig()
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.device = resolve_device(self.config.device, "lightgcn.device")
        self.net: LightGCNNet | None = None
        self.vectors: tuple[torch.Tensor, torch.Tensor] | None = None
        """(user vectors, item vectors) of the fitted model, on `device`."""
        self.report: TrainingReport | None = None

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "LightGCN":
        return cls(config.lightgcn, config.seed, context.checkpoint_dir(cls.name))

    def use_settings(self, config: RunConfig) -> "LightGCN":
        return self.to(resolve_device(config.lightgcn.device, "lightgcn.device"))

    def to(self, device: torch.device) -> "LightGCN":
        """Score (and train) on `device` from now on; returns the model."""
        self.device = device
        self.config = dataclasses.replace(self.config, device=str(device))
        if self.net is not None:
            self.net.to(device)
        if self.vectors is not None:
            self.vectors = (self.vectors[0].to(device), self.vectors[1].to(device))
        return self

    def fit(self, split: Split) -> "LightGCN":
        from llmrec.eval.evaluator import FullRankingEvaluator  # evaluator imports models.base

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        seed_everything(self.seed)
        train = interaction_matrix(split.train, split.num_items + 1)
        graph = normalised_graph(train)
        self.net = LightGCNNet(split.num_users, split.num_items + 1, graph, self.config).to(self.device)
        self.vectors = None
        pairs = train.tocoo()
        examples = torch.as_tensor(np.vstack([pairs.row, pairs.col]).T, dtype=torch.long)
        validator = FullRankingEvaluator(split, EvalConfig(ks=[10], seed=self.seed))

        def validate() -> float:
            self._propagate()  # once per validation, not once per evaluation batch
            return validator.evaluate(self, split.valid, desc="validate")["NDCG@10"]

        trainer = Trainer(self.net, self._loss, lambda epoch: self._batches(examples, epoch), validate,
                          self.config, self.checkpoint_dir,
                          fingerprint=checkpoint_fingerprint(self.name, self.config, self.seed, split))
        self.report = trainer.fit()
        self._propagate()
        return self

    def _propagate(self) -> None:
        """Keep the current (user vectors, item vectors) for scoring."""
        with torch.no_grad():
            self.vectors = self.net()  # type: ignore[misc]

    def user_vectors(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """[B, d] (on the CPU) the graph's vector of each known user; a user it does not know (index -1) is folded
        in as the mean of their history items' vectors (items added after training have none and are left out)."""
        return self._user_vectors(users, histories).cpu()

    def _user_vectors(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if self.vectors is None:
            raise ModelNotTrainedError("lightgcn: call fit() or load a trained model first")
        with torch.no_grad():
            user_vectors, item_vectors = self.vectors
            histories = [h[h < len(item_vectors)] for h in map(np.asarray, histories)]
            users = torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.device)
            history = torch.as_tensor(interaction_matrix(histories, len(item_vectors)).toarray(), device=self.device)
            folded = history @ item_vectors / history.sum(dim=1, keepdim=True).clamp_min(1)
            return torch.where((users >= 0).unsqueeze(1), user_vectors[users.clamp_min(0)], folded)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        vectors = self._user_vectors(users, histories)
        return vectors @ self.vectors[1].T  # type: ignore[index]

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        user_vectors, item_vectors = self.vectors  # type: ignore[misc]
        return ({"seed": self.seed, "config": dataclasses.asdict(self.config)},
                {"user_vectors": user_vectors.cpu(), "item_vectors": item_vectors.cpu()})

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "LightGCN":
        model = cls(LightGCNConfig(**{**params["config"], "device": "cpu"}), params["seed"])
        model.vectors = (tensors["user_vectors"], tensors["item_vectors"])
        return model

    def _loss(self, net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """`net` is `self.net` or its DDP wrapper; `batch` holds (user, item) rows."""
        user_vectors, item_vectors = net()
        batch = batch.to(self.device)
        negatives = torch.randint(1, len(item_vectors), (self.config.num_negatives,), device=self.device)
        return sampled_softmax_loss(user_vectors[batch[:, 0]], item_vectors, batch[:, 1], negatives)

    def _batches(self, examples: torch.Tensor, epoch: int) -> Iterator[torch.Tensor]:
        order = np.random.default_rng(self.seed + epoch).permutation(len(examples))
        for start in range(0, len(order), self.config.batch_size):
            yield examples[order[start:start + self.config.batch_size]]
