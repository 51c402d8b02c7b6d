"""Ranking: the one way scores become recommendation lists, with the one exclusion rule, for the evaluator, the
reranker's candidates, the online facade, the command line and HTTP.

The exclusion rule (`Exclusion`): padding (item 0), every item of the query's history and any extra excluded
item are never ranked, except the items in `keep`, which stay rankable. Only evaluation passes `keep`: its
targets. Under leave-one-out a target the user had already consumed (a repeat purchase) would otherwise be
unrankable for every model, so the protocol keeps it rankable and counts the case like any other; at serving
time everything the user has seen is left out.

    top = rank(model, users, histories, k=10)                # RankedItems: items [B, k], scores [B, k]
    top = rank(model, users, histories, k=10, exclude=[[3, 4]] * len(users))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from llmrec.data.split import PADDING
from llmrec.models.base import Scorer


@dataclass(frozen=True)
class Exclusion:
    """Which items each of B queries may not be ranked (the module's rule): padding, the query's `histories`
    and `extra` items, less the `keep` items. Each of `extra` and `keep` holds one array of item indices per
    query."""

    histories: Sequence[np.ndarray]
    extra: Sequence[np.ndarray] | None = None
    keep: Sequence[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.histories)

    def mask(self, num_columns: int) -> torch.Tensor:
        """[B, num_columns] bool, True where an item may not be ranked (on the CPU)."""
        mask = torch.zeros(len(self), num_columns, dtype=torch.bool)
        mask[:, PADDING] = True
        mask[_positions(self.histories)] = True
        if self.extra is not None:
            mask[_positions(self.extra)] = True
        if self.keep is not None:
            mask[_positions(self.keep)] = False
        return mask

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """`scores` [B, num_columns] (on any device; left unchanged) with -inf where an item may not be ranked."""
        return scores.masked_fill(self.mask(scores.shape[1]).to(scores.device), -torch.inf)


def _positions(rows: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) index tensors of every item of every row, for indexing a [B, num_columns] mask."""
    lengths = [len(items) for items in rows]
    row = np.repeat(np.arange(len(rows)), lengths)
    column = np.concatenate([np.asarray(items, dtype=np.int64) for items in rows]) if sum(lengths) else row
    return torch.as_tensor(row, dtype=torch.long), torch.as_tensor(column, dtype=torch.long)


@dataclass(frozen=True)
class RankedItems:
    """The best items of B queries, best first: `items` [B, n] (0 pads where fewer than n items may be ranked)
    and their `scores` [B, n] (-inf on padding). CPU tensors."""

    items: torch.Tensor
    scores: torch.Tensor


def top_items(scores: torch.Tensor, exclusion: Exclusion, n: int) -> RankedItems:
    """The `n` best items of full-catalog `scores` [B, num_items + 1] (any device; left unchanged) that
    `exclusion` allows."""
    allowed = exclusion.apply(scores)
    top = allowed.topk(min(n, allowed.shape[1] - 1), dim=1)  # padding is never ranked
    values, indices = top.values.cpu(), top.indices.cpu()
    return RankedItems(indices.masked_fill(values == -torch.inf, PADDING), values)


class StagedScorer(ABC):
    """A scorer that ranks in stages (candidates first, e.g. retrieval then a reranker): it is told which items
    are excluded, so that none of its candidates is one of them."""

    @abstractmethod
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray], exclusion: Exclusion) -> torch.Tensor:
        """Scores [B, num_items + 1] for every catalog item (excluded items may hold anything)."""


def allowed_scores(scorer: Scorer | StagedScorer, users: np.ndarray, exclusion: Exclusion) -> torch.Tensor:
    """The scorer's full-catalog scores for `users` and `exclusion.histories`, -inf where `exclusion` forbids an
    item (on the scorer's device)."""
    if isinstance(scorer, StagedScorer):
        scores = scorer.score(users, exclusion.histories, exclusion)
    else:
        scores = scorer.score(users, exclusion.histories)
    return exclusion.apply(scores.detach())


def rank(scorer: Scorer | StagedScorer, users: np.ndarray, histories: Sequence[np.ndarray], k: int,
         exclude: Sequence[np.ndarray] | None = None, keep: Sequence[np.ndarray] | None = None) -> RankedItems:
    """The top `k` items for each (user, history) query: `users` are split user indices (-1 = unknown user),
    `histories` item indices (oldest first); `exclude` and `keep` as in `Exclusion`."""
    exclusion = Exclusion(histories, exclude, keep)
    with torch.no_grad():
        scores = allowed_scores(scorer, np.asarray(users), exclusion)
    return top_items(scores, exclusion, k)
