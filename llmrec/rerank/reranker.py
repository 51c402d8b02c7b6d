"""Reranker: trained on the interest model's own hard negatives, applied to its top-N candidates.

Training cases are the validation cases (history = the training sequence, target = the validation item): the
interest model never trained on those targets, so its candidates there are the realistic hard negatives it
produces at serving time (on training positions it has memorised the targets). Cases whose target retrieval
misses cannot teach the reranker anything and are left out of the loss; `holdout_fraction` of the users are kept
aside, and early stopping watches their NDCG@10 over the reranked lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llmrec.config import RerankConfig
from llmrec.data.split import PADDING, EvalCases, Split
from llmrec.device import resolve_device
from llmrec.errors import DataError
from llmrec.models.interest import InterestModel
from llmrec.ranking import Exclusion, RankedItems, StagedScorer, top_items
from llmrec.rerank.candidates import Queries, describe_queries, item_table
from llmrec.rerank.net import RerankNet
from llmrec.train.loop import Trainer, TrainingReport, checkpoint_fingerprint, seed_everything

_CHUNK = 256
"""Queries per chunk when preparing candidates and text features."""
OUTSIDE_OFFSET = 1e6
"""Full-catalog scores put every non-candidate this far below the candidates (keeping retrieval's order)."""


def _take(batch: Any, rows: torch.Tensor | slice) -> Any:
    """The same dataclass (Queries or RankedItems) restricted to `rows`."""
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name)[rows] for f in dataclasses.fields(batch)})


def _to(batch: Any, device: torch.device) -> Any:
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                         for f in dataclasses.fields(batch)})


def _concat(parts: list[Any]) -> Any:
    first = parts[0]
    return dataclasses.replace(first, **{f.name: torch.cat([getattr(p, f.name) for p in parts])
                                         for f in dataclasses.fields(first)})


def _without_padding_columns(queries: Queries) -> Queries:
    """`queries` without the leading history columns that are padding in every query (histories are left-padded to
    `history_len`): the scores do not change (the network masks padding), and short histories cost little."""
    used = (queries.histories != PADDING).any(0).nonzero()
    first = int(used[0]) if len(used) else queries.histories.shape[1] - 1
    return dataclasses.replace(queries, histories=queries.histories[:, first:])


@dataclasses.dataclass
class _Prepared:
    """Training cases with their candidates, fixed text features and the target's position (-1 = missed)."""

    queries: Queries
    candidates: RankedItems
    text: torch.Tensor
    labels: torch.Tensor


class Reranker:
    """Rescores the interest model's top-N. `text_vectors` are the catalog's text embeddings [num_items + 1, T]
    (row 0 padding) and `popularity` the training interactions per item."""

    name = "rerank"

    def __init__(self, model: InterestModel, text_vectors: np.ndarray, popularity: np.ndarray,
                 config: RerankConfig | None = None, seed: int = 42, checkpoint_dir: str | Path | None = None) -> None:
        self.model = model
        self.config = config or RerankConfig()
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.device = resolve_device(self.config.device, "rerank.device")
        self.report: TrainingReport | None = None
        seed_everything(seed)
        self.net = RerankNet(item_table(model), torch.as_tensor(np.asarray(text_vectors)),
                             torch.as_tensor(np.asarray(popularity)), model.features.context_sizes,
                             self.config.hidden_size).to(self.device)

    def describe(self, users: np.ndarray, histories: Sequence[np.ndarray], context: np.ndarray | None = None,
                 profiles: torch.Tensor | None = None) -> Queries:
        """The reranker's view of these (user, history) queries (`context` replaces the stored context ids,
        `profiles` the long-term inputs)."""
        return describe_queries(self.model, users, histories, self.config.history_len, context, profiles)

    def put_items(self, items: np.ndarray, item_rows: torch.Tensor, text_vectors: np.ndarray) -> None:
        """Give `items` the interest model's item vectors `item_rows` and these text vectors, without retraining;
        indices past the tables are items added while serving (see `RerankNet.put_items`)."""
        self.net.put_items(torch.as_tensor(items, dtype=torch.long), item_rows, torch.as_tensor(text_vectors))

    def rerank(self, queries: Queries, candidates: RankedItems) -> torch.Tensor:
        """Scores [B, N] (on the CPU; -inf on padding) for the candidates, computed on `config.device`."""
        if self.net.training:  # eval() walks every module: not on every request
            self.net.eval()
        with torch.no_grad():
            queries, candidates = _to(_without_padding_columns(queries), self.device), _to(candidates, self.device)
            scores = self.net(queries, candidates, self.net.text_features(queries, candidates))
        return scores.cpu()

    def fit(self, split: Split) -> "Reranker":
        """Train on the validation cases' retrieval results (see the module docstring)."""
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        data = self._prepare(split.valid)
        order = np.random.default_rng(self.seed).permutation(len(data.labels))
        n_holdout = max(1, int(round(self.config.holdout_fraction * len(order))))
        holdout = torch.as_tensor(np.sort(order[:n_holdout]))
        train = torch.as_tensor(np.sort(order[n_holdout:]))
        train = train[data.labels[train] >= 0]  # a missed target teaches nothing
        trainer = Trainer(self.net, lambda net, rows: self._loss(net, data, rows),
                          lambda epoch: self._batches(train, epoch), lambda: self._ndcg_at_10(data, holdout),
                          self.config, self.checkpoint_dir, fingerprint=self._fingerprint(split))
        self.report = trainer.fit()
        return self

    def _prepare(self, cases: EvalCases) -> _Prepared:
        table = self.model.retrieval_table()
        parts, texts, labels = [], [], []
        for start in tqdm(range(0, len(cases), _CHUNK), desc="rerank: retrieve", unit="chunk", leave=False):
            chunk = cases.subset(np.arange(start, min(start + _CHUNK, len(cases))))
            queries = self.describe(chunk.users, chunk.histories)
            scores = self.model.retrieval_queries(queries.interest, chunk.histories) @ table.T  # as served
            candidates = top_items(scores, Exclusion(chunk.histories), self.config.candidates)
            with torch.no_grad():
                texts.append(self.net.text_features(_to(queries, self.device), _to(candidates, self.device)).cpu())
            targets = torch.as_tensor([t[0] for t in chunk.targets]).unsqueeze(1)
            hit = candidates.items == targets
            labels.append(torch.where(hit.any(1), hit.float().argmax(1), -1))
            parts.append((queries, candidates))
        return _Prepared(_concat([q for q, _ in parts]), _concat([c for _, c in parts]), torch.cat(texts),
                         torch.cat(labels))

    def _loss(self, net: torch.nn.Module, data: _Prepared, rows: torch.Tensor) -> torch.Tensor:
        queries = _to(_take(data.queries, rows), self.device)
        candidates = _to(_take(data.candidates, rows), self.device)
        scores = net(queries, candidates, data.text[rows].to(self.device))
        return F.cross_entropy(scores, data.labels[rows].to(self.device))

    def _batches(self, rows: torch.Tensor, epoch: int) -> Iterator[torch.Tensor]:
        order = torch.as_tensor(np.random.default_rng(self.seed + epoch).permutation(len(rows)))
        for start in range(0, len(rows), self.config.batch_size):
            yield rows[order[start:start + self.config.batch_size]]

    def _ndcg_at_10(self, data: _Prepared, rows: torch.Tensor) -> float:
        """NDCG@10 over the reranked lists of `rows` (a missed target counts 0)."""
        gains = []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            with torch.no_grad():
                scores = self.net(_to(_take(data.queries, chunk), self.device),
                                  _to(_take(data.candidates, chunk), self.device),
                                  data.text[chunk].to(self.device)).cpu()
            labels = data.labels[chunk]
            target = scores.gather(1, labels.clamp_min(0).unsqueeze(1))
            rank = (scores > target).sum(1) + 1
            gains.append(torch.where((labels >= 0) & (rank <= 10), 1 / torch.log2(rank.float() + 1), 0.0))
        return float(torch.cat(gains).mean())

    def _fingerprint(self, split: Split) -> str:
        items = hashlib.sha256(self.net.item_table.cpu().numpy().tobytes()).hexdigest()
        return checkpoint_fingerprint(self.name, self.config, self.seed, split, items)

    def save(self, folder: str | Path) -> Path:
        """Write `model.json` and the reranker's own weights (its item-side inputs come from the interest model
        and the catalog, so `load` takes those again)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, folder / "weights.pt")
        meta = {"model": self.name, "config": dataclasses.asdict(self.config), "seed": self.seed}
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, model: InterestModel, text_vectors: np.ndarray, popularity: np.ndarray,
             device: str | None = None) -> "Reranker":
        """A reranker written by `save`, on `device` (default: the saved config's)."""
        folder = Path(folder)
        if not (folder / "model.json").is_file():
            raise DataError(f"no saved reranker in {folder}; train it first (`llmrec rerank`)")
        meta = json.loads((folder / "model.json").read_text())
        config = RerankConfig(**meta["config"])
        if device is not None:
            config = dataclasses.replace(config, device=device)
        reranker = cls(model, text_vectors, popularity, config, meta["seed"])
        reranker.net.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
        reranker.net.to(reranker.device)
        return reranker


class RerankScorer(StagedScorer):
    """Scores over the whole catalog for the evaluator: the candidates from exact retrieval, reranked, above
    every other item (which keep retrieval's order)."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker
        self.table = reranker.model.retrieval_table()

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray], exclusion: Exclusion) -> torch.Tensor:
        queries = self.reranker.describe(users, histories)
        full = self.reranker.model.retrieval_queries(queries.interest, histories) @ self.table.T
        candidates = top_items(full, exclusion, self.reranker.config.candidates)
        reranked = self.reranker.rerank(queries, candidates)
        full = full - OUTSIDE_OFFSET
        keep = candidates.items > 0
        full[torch.nonzero(keep, as_tuple=True)[0], candidates.items[keep]] = reranked[keep]
        return full
