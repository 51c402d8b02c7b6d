"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention encoder over the item-ID sequence, trained with
softmax cross-entropy over the catalog (or sampled softmax), which is what makes it competitive (Klenitskiy &
Vasilev 2023, "Turning Dross Into Gold Loss"; Petrov & Macdonald 2023, gSASRec)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from llmrec.config import EvalConfig, RunConfig, SASRecConfig
from llmrec.data.split import Split
from llmrec.device import resolve_device
from llmrec.errors import ModelNotTrainedError
from llmrec.models.base import BuildContext, Model, pad_histories
from llmrec.train.losses import full_softmax_loss, sampled_softmax_loss
from llmrec.train.loop import Trainer, TrainingReport, checkpoint_fingerprint, seed_everything


class SASRecEncoder(nn.Module):
    """Item + position embeddings -> pre-LN causal transformer blocks -> hidden state per position."""

    def __init__(self, num_items: int, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_heads
        self.item_embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, d)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(d, config.num_heads, dim_feedforward=d, dropout=config.dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.num_blocks, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d)
        nn.init.normal_(self.item_embedding.weight, std=d ** -0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """sequences [B, L] left-padded item indices -> hidden [B, L, d]."""
        batch, length = sequences.shape
        positions = torch.arange(length, device=sequences.device)
        x = self.item_embedding(sequences) * math.sqrt(self.item_embedding.embedding_dim)
        x = self.dropout(x + self.position_embedding(positions))
        padding = sequences == 0
        x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        hidden = self.blocks(x, mask=causal_attention_mask(padding, self.num_heads))
        return self.final_norm(hidden)


def causal_attention_mask(padding: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B * heads, L, L] mask for left-padded sequences (`padding` [B, L] True at padding). True = may not
    attend: future positions and padding keys (a position always sees itself, so no row is empty)."""
    length = padding.shape[1]
    future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=padding.device), diagonal=1)
    itself = torch.eye(length, dtype=torch.bool, device=padding.device)
    blocked = future.unsqueeze(0) | (padding.unsqueeze(1) & ~itself)
    return blocked.repeat_interleave(num_heads, dim=0)


class SASRec(Model):
    """ID-based sequential recommender; scores items by the dot product of the last hidden state with the
    (shared) item embeddings. Items never seen in training keep their random initial embedding."""

    name = "sasrec"

    def __init__(self, num_items: int, config: SASRecConfig | None = None, seed: int = 42,
                 checkpoint_dir: str | Path | None = None) -> None:
        self.num_items = num_items
        self.config = config or SASRecConfig()
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.device = resolve_device(self.config.device, "sasrec.device")
        seed_everything(seed)
        self.encoder = SASRecEncoder(num_items, self.config).to(self.device)
        self.report: TrainingReport | None = None
        self._fitted = False

    @classmethod
    def from_config(cls, config: RunConfig, context: BuildContext) -> "SASRec":
        return cls(context.split.num_items, config.sasrec, config.seed, context.checkpoint_dir(cls.name))

    def use_settings(self, config: RunConfig) -> "SASRec":
        return self.to(resolve_device(config.sasrec.device, "sasrec.device"))

    def to(self, device: torch.device) -> "SASRec":
        """Score (and train) on `device` from now on; returns the model."""
        self.device = device
        self.config = dataclasses.replace(self.config, device=str(device))
        self.encoder.to(device)
        return self

    def fit(self, split: Split) -> "SASRec":
        from llmrec.eval.evaluator import FullRankingEvaluator  # evaluator imports models.base

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        seed_everything(self.seed)
        examples = _training_windows(split.train, self.config.max_len + 1)
        validator = FullRankingEvaluator(split, EvalConfig(ks=[10], seed=self.seed))
        self._fitted = True  # validation scores with the model as it trains
        trainer = Trainer(
            self.encoder, self._loss, lambda epoch: self._batches(examples, epoch),
            lambda: validator.evaluate(self, split.valid, desc="validate")["NDCG@10"],
            self.config,
            self.checkpoint_dir, fingerprint=checkpoint_fingerprint(self.name, self.config, self.seed, split),
        )
        self.report = trainer.fit()
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if not self._fitted:
            raise ModelNotTrainedError("sasrec: call fit() or load a trained model first")
        self.encoder.eval()
        with torch.no_grad():
            sequences = pad_histories(histories, self.config.max_len).to(self.device)
            last = self.encoder(sequences)[:, -1]
            return last @ self.encoder.item_embedding.weight.T

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        params = {"num_items": self.num_items, "seed": self.seed, "config": dataclasses.asdict(self.config)}
        return params, {k: v.cpu() for k, v in self.encoder.state_dict().items()}

    @classmethod
    def from_state(cls, params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "SASRec":
        model = cls(params["num_items"], SASRecConfig(**{**params["config"], "device": "cpu"}), params["seed"])
        model.encoder.load_state_dict(tensors)
        model._fitted = True
        return model

    def _loss(self, encoder: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """`encoder` is `self.encoder` or its DDP wrapper."""
        batch = batch.to(self.device)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        hidden = encoder(inputs)
        keep = targets != 0
        hidden, targets = hidden[keep], targets[keep]
        table = self.encoder.item_embedding.weight
        if self.config.loss == "softmax":
            return full_softmax_loss(hidden, table, targets)
        negatives = torch.randint(1, self.num_items + 1, (self.config.num_negatives,), device=self.device)
        return sampled_softmax_loss(hidden, table, targets, negatives)

    def _batches(self, examples: torch.Tensor, epoch: int) -> Iterator[torch.Tensor]:
        order = np.random.default_rng(self.seed + epoch).permutation(len(examples))
        for start in range(0, len(order), self.config.batch_size):
            yield examples[order[start: start + self.config.batch_size]]


def _training_windows(sequences: list[np.ndarray], length: int) -> torch.Tensor:
    """The last `length` items of each training sequence with at least 2 items, left-padded."""
    usable = [s for s in sequences if len(s) >= 2]
    return pad_histories(usable, length)
