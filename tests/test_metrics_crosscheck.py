"""llmrec's full-ranking metrics against trec_eval (pytrec_eval), on ML-100K with trained models.

The evaluator's numbers for NDCG, HR, Recall and Precision at 5, 10 and 20 and MRR must equal what trec_eval
computes from the same model scores to 1e-6. The two share only the raw scores: this file excludes the history,
breaks ties and orders the catalog itself, and trec_eval computes the metrics from that order.

Ties follow the evaluator's documented rule: a target tied with n other items is placed after
floor(u * (n + 1)) of them, u drawn in case order from `torch.Generator().manual_seed(eval.seed)`, one draw
per case, in batches of `eval.batch_size`. Popularity, whose scores are counts, has ties everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
import torch

from llmrec.config import EvalConfig, InterestConfig, RunConfig
from llmrec.data.split import EvalCases, Split
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.models.interest import InterestModel
from llmrec.models.interest_inputs import build_user_features
from llmrec.models.popularity import Popularity
from llmrec.models.registry import load_model

SASREC = Path(__file__).resolve().parents[1] / "bench" / "models" / "movielens-100k" / "sasrec"
KS = (5, 10, 20)
TREC_MEASURES = {f"{m}.{','.join(map(str, KS))}" for m in ("ndcg_cut", "success", "recall", "P")} | {"recip_rank"}
OURS_TO_TREC = {**{f"{ours}@{k}": f"{trec}_{k}" for k in KS for ours, trec in
                   (("NDCG", "ndcg_cut"), ("HR", "success"), ("Recall", "recall"), ("Precision", "P"))},
                "MRR": "recip_rank"}
EVAL = EvalConfig(ks=list(KS), seed=42, batch_size=256)


class Recording:
    """A scorer that remembers every score matrix it hands to the evaluator, in call order."""

    def __init__(self, model) -> None:
        self.model = model
        self.batches: list[np.ndarray] = []

    def score(self, users, histories) -> torch.Tensor:
        scores = self.model.score(users, histories)
        self.batches.append(scores.detach().to("cpu", torch.float32).numpy().copy())
        return scores


def independent_metrics(scores: np.ndarray, cases: EvalCases, config: EvalConfig) -> dict[str, float]:
    """Mean trec_eval metrics over `cases` from raw scores [cases, num_items + 1] (column 0 is padding)."""
    generator = torch.Generator().manual_seed(config.seed)
    draws = np.concatenate([torch.rand((len(cases.users[start:start + config.batch_size]), 1),
                                       generator=generator).numpy()[:, 0]
                            for start in range(0, len(cases), config.batch_size)])
    qrels, run = {}, {}
    for case, (history, targets) in enumerate(zip(cases.histories, cases.targets)):
        assert len(targets) == 1, "leave-one-out: one target per case"
        target = int(targets[0])
        candidate = np.ones(scores.shape[1], dtype=bool)
        candidate[0] = False  # padding
        candidate[[int(i) for i in history if int(i) != target]] = False  # seen, unless it is the target
        items = np.flatnonzero(candidate)
        items = items[np.argsort(-scores[case, items], kind="stable")]  # best first; ties in item order
        level = scores[case, target]
        higher = [int(i) for i in items if scores[case, i] > level]
        tied = [int(i) for i in items if scores[case, i] == level and i != target]
        lower = [int(i) for i in items if scores[case, i] < level]
        before = int(np.floor(draws[case] * (len(tied) + 1)))
        order = higher + tied[:before] + [target] + tied[before:] + lower
        qrels[str(case)] = {str(target): 1}
        run[str(case)] = {str(item): float(len(order) - rank) for rank, item in enumerate(order)}
    per_case = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES).evaluate(run)
    return {ours: float(np.mean([per_case[str(c)][trec] for c in range(len(cases))]))
            for ours, trec in OURS_TO_TREC.items()}


def check_against_trec_eval(model, split: Split) -> dict[str, float]:
    recording = Recording(model)
    ours = FullRankingEvaluator(split, EVAL).evaluate(recording, split.test)
    theirs = independent_metrics(np.concatenate(recording.batches), split.test, EVAL)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    return ours


@pytest.fixture(scope="module")
def interest_model(ml100k, ml100k_split):
    """The interest model trained for 3 epochs on ML-100K (about 20 s; the mean long-term item vector as its
    long-term input, so no LLM is needed; item text from the embedded MiniLM, cached across runs)."""
    config = RunConfig(interest=InterestConfig(hidden_size=32, epochs=3, eval_every=3, lr=0.005, batch_size=64,
                                               earlier_windows=0, num_negatives=256, profile_source="mean-items",
                                               threads=2))
    encoder = ItemEncoder(config.encoder)
    vectors = encoder.encode(ml100k.catalog.texts(), ml100k.catalog.text_template)
    item_vectors = np.vstack([np.zeros((1, vectors.shape[1]), dtype=vectors.dtype), vectors])
    inputs = build_user_features(config, ml100k, ml100k_split, item_vectors, encoder, profiles=None)
    return InterestModel(item_vectors, inputs, config.profile.recent_items, config.interest).fit(ml100k_split)


def test_sasrec_metrics_equal_trec_eval(ml100k_split):
    model = load_model(SASREC)
    ours = check_against_trec_eval(model, ml100k_split)
    assert ours["NDCG@10"] == pytest.approx(0.0992, abs=5e-5)  # the committed benchmark record


def test_interest_model_metrics_equal_trec_eval(ml100k_split, interest_model):
    ours = check_against_trec_eval(interest_model, ml100k_split)
    assert ours["HR@10"] > 0.0848  # trained: above popularity's committed record


def test_tied_scores_are_ranked_as_trec_eval_is_told(ml100k_split):
    ours = check_against_trec_eval(Popularity().fit(ml100k_split), ml100k_split)
    assert ours["NDCG@10"] == pytest.approx(0.0438, abs=5e-5)  # the committed benchmark record
