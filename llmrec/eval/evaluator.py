"""Full-ranking evaluation: exact scores over the whole catalog, the user's history excluded (the rule of
`llmrec.ranking`, with each case's targets kept rankable)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from llmrec.config import EvalConfig
from llmrec.data.split import EvalCases, Split
from llmrec.eval import metrics as M
from llmrec.models.base import Scorer
from llmrec.ranking import Exclusion, StagedScorer, allowed_scores


@dataclass(frozen=True)
class CaseRanks:
    """Per-case ranks of the relevant items (+inf padded) and each case's top-K recommendation list."""

    ranks: np.ndarray
    n_relevant: np.ndarray
    top_items: np.ndarray


class FullRankingEvaluator:
    """Ranks every catalog item for each case and reports HR, NDCG, Recall, Precision, F1, MRR, Coverage and
    novelty (and intra-list diversity, given item vectors) at each K, overall and for user/item groups: tail
    users (shortest histories), tail items (least popular targets) and cold items (targets never seen in
    training).

    Items are excluded by `llmrec.ranking.Exclusion`: the history, except the case's targets (a repeat
    purchase must stay rankable). Ties between equal scores are broken at random with a fixed seed, so a model that
    gives every item the same score gets the expected rank, not the best one.
    """

    def __init__(self, split: Split, config: EvalConfig | None = None,
                 item_vectors: np.ndarray | None = None) -> None:
        """`item_vectors` [num_items + 1, d] (e.g. the text embeddings) add intra-list diversity@K."""
        self.split = split
        self.config = config or EvalConfig()
        self.item_vectors = item_vectors
        popularity = split.train_popularity()
        self._popularity = popularity
        by_popularity = np.argsort(-popularity[1:], kind="stable") + 1
        n_head = int(round(split.num_items * (1 - self.config.tail_item_fraction)))
        self._tail_items = np.ones(split.num_items + 1, dtype=bool)
        self._tail_items[by_popularity[:n_head]] = False

    def rank(self, model: Scorer | StagedScorer, cases: EvalCases, desc: str = "evaluate") -> CaseRanks:
        """Score all items for every case and return the ranks of its targets."""
        max_k = max(self.config.ks)
        generator = torch.Generator().manual_seed(self.config.seed)
        max_rel = max((len(t) for t in cases.targets), default=1)
        ranks = np.full((len(cases), max_rel), np.inf)
        top_items = np.zeros((len(cases), max_k), dtype=np.int64)
        batch = self.config.batch_size
        with torch.no_grad():
            for start in tqdm(range(0, len(cases), batch), desc=desc, unit="batch", leave=False):
                rows = slice(start, start + batch)
                targets = cases.targets[rows]
                exclusion = Exclusion(cases.histories[rows], keep=targets)
                scores = allowed_scores(model, cases.users[rows], exclusion).to("cpu", torch.float32)
                ranks[rows] = _target_ranks(scores, targets, max_rel, generator)
                top_items[rows] = torch.topk(scores, max_k, dim=1).indices.numpy()
        n_relevant = np.array([len(t) for t in cases.targets])
        return CaseRanks(ranks, n_relevant, top_items)

    def evaluate(self, model: Scorer | StagedScorer, cases: EvalCases | None = None,
                 desc: str = "evaluate") -> dict[str, float]:
        """Metrics over `cases` (the test cases by default), with group breakdowns."""
        cases = self.split.test if cases is None else cases
        return self.summarise(self.rank(model, cases, desc), cases)

    def summarise(self, result: CaseRanks, cases: EvalCases) -> dict[str, float]:
        """Metrics of ranks `result` of `cases` (from `rank`), with group breakdowns."""
        metrics = self._metrics(result, np.ones(len(cases), dtype=bool), "")
        for group, mask in self.groups(cases).items():
            if mask.any():
                metrics.update(self._metrics(result, mask, f"-{group}", headline_only=True))
            metrics[f"cases-{group}"] = int(mask.sum())
        metrics["cases"] = len(cases)
        return metrics

    def groups(self, cases: EvalCases) -> dict[str, np.ndarray]:
        """Boolean masks over cases: tail-users, tail-items and cold-items."""
        lengths = np.array([len(h) for h in cases.histories])
        n_tail_users = math.ceil(len(cases) * self.config.tail_user_fraction)
        tail_users = np.zeros(len(cases), dtype=bool)
        tail_users[np.argsort(lengths, kind="stable")[:n_tail_users]] = True
        first_target = np.array([t[0] for t in cases.targets])
        return {
            "tail-users": tail_users,
            "tail-items": self._tail_items[first_target],
            "cold-items": self._popularity[first_target] == 0,
        }

    def _metrics(self, result: CaseRanks, mask: np.ndarray, suffix: str,
                 headline_only: bool = False) -> dict[str, float]:
        ranks, n_rel = result.ranks[mask], result.n_relevant[mask]
        out: dict[str, float] = {}
        for k in self.config.ks:
            out[f"NDCG@{k}{suffix}"] = float(M.ndcg(ranks, n_rel, k).mean())
            out[f"HR@{k}{suffix}"] = float(M.hit_rate(ranks, k).mean())
            if headline_only:
                continue
            out[f"Recall@{k}"] = float(M.recall(ranks, n_rel, k).mean())
            out[f"Precision@{k}"] = float(M.precision(ranks, k).mean())
            out[f"F1@{k}"] = float(M.f1(ranks, n_rel, k).mean())
            top = result.top_items[mask, :k]
            out[f"Coverage@{k}"] = M.coverage(top, self.split.num_items)
            out[f"novelty@{k}"] = float(M.novelty(top, self._popularity, self.split.num_users).mean())
            if self.item_vectors is not None:
                out[f"diversity@{k}"] = float(M.intra_list_diversity(top, self.item_vectors).mean())
        out[f"MRR{suffix}"] = float(M.reciprocal_rank(ranks).mean())
        return out


def _target_ranks(scores: torch.Tensor, targets: list[np.ndarray], width: int,
                  generator: torch.Generator) -> np.ndarray:
    """0-based rank of each target: items scored higher, plus a seeded random share of the ties."""
    padded = torch.zeros(len(targets), width, dtype=torch.long)
    valid = torch.zeros(len(targets), width, dtype=torch.bool)
    for row, target in enumerate(targets):
        padded[row, : len(target)] = torch.as_tensor(target, dtype=torch.long)
        valid[row, : len(target)] = True
    target_scores = scores.gather(1, padded)  # [B, width]
    higher = (scores.unsqueeze(1) > target_scores.unsqueeze(2)).sum(2)
    ties = (scores.unsqueeze(1) == target_scores.unsqueeze(2)).sum(2) - 1
    share = torch.rand(target_scores.shape, generator=generator)
    rank = higher + torch.floor(share * (ties + 1)).long()
    return torch.where(valid, rank.double(), torch.tensor(math.inf, dtype=torch.float64)).numpy()
