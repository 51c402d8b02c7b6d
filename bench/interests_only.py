"""Users known only by their words, on a benchmark run's trained `llmrec` model: each test user's written interest
summary — the long-term profile the run stores for them, written from the training history before the profile
cut-off, so it never names a validation or test item — is the only input (`recommend(interests=...)`'s path: no
item ids, an anonymous user), ranked over the full catalog beside popularity on the same test cases (items in the
user's history excluded, as in every full-ranking evaluation here). Users without a stored profile (an empty
long-term part) are left out; `cases` says how many remain. Writes `interests-only` and `popularity` records to
bench/results/interests_only.json.

    LLMREC_DATA_DIR=../shared/datasets python bench/interests_only.py movielens-1m
    ... --run-dir runs/bench-movielens-1m/llmrec-template-profile    a variant's run folder (its name is added to
                                                                     the record names)
    ... --users 1000                                                 a seeded sample of the test users
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.models.popularity import Popularity
from llmrec.pipeline import Recommender
from llmrec.profiles.job import long_term_request

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "interests_only.json"
REPORTED = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "Coverage@10", "cases"]


class InterestsOnlyScorer:
    """A Scorer for the evaluator: every item's retrieval score for an anonymous user with an empty history whose
    long-term input is their stated interests (`texts` by split user index)."""

    def __init__(self, recommender: Recommender, texts: dict[int, str]) -> None:
        self.recommender = recommender
        self.texts = texts

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        model = self.recommender.model
        profiles = self.recommender.stated_interest_vectors([self.texts[int(u)] for u in users])
        nobody = np.full(len(users), -1)
        no_history = [np.zeros(0, dtype=np.int64)] * len(users)
        interest, _ = model.interest(nobody, no_history, profiles=profiles)
        return model.retrieval_queries(interest, no_history) @ self.recommender.retrieval_table.T


def interests_only_records(recommender: Recommender, dataset: str, command: str, users: int | None = None,
                           suffix: str = "") -> list[dict]:
    """`interests-only` and `popularity` on the test cases of (a seeded sample of `users`) test users with a
    stored profile; record names end with `suffix`."""
    split = recommender.split
    cases = split.test
    if users is not None and users < len(cases):
        cases = cases.subset(np.sort(np.random.default_rng(recommender.config.seed).choice(len(cases), users,
                                                                                           replace=False)))
    recent = recommender.config.profile.recent_items
    requests = [long_term_request(split, int(u), recent) for u in cases.users]
    stored = recommender.profiles.lookup(requests)
    keep = np.flatnonzero([p is not None for p in stored])
    texts = {int(cases.users[i]): stored[i].text for i in keep}
    cases = cases.subset(keep)
    evaluator = FullRankingEvaluator(split, recommender.config.eval, recommender.item_vectors)
    records = []
    for name, scorer in (("interests-only", InterestsOnlyScorer(recommender, texts)),
                         ("popularity", Popularity().fit(split))):
        started = time.perf_counter()
        metrics = evaluator.evaluate(scorer, cases, desc=f"evaluate {name}")
        kept = {k: metrics[k] for k in REPORTED if k in metrics}
        kept.update({"profile_writer": recommender.profiles.model_id, "users_without_profile": len(stored) - len(keep)})
        records.append(make_record(dataset, name + suffix, kept, command, recommender.config.seed,
                                   time.perf_counter() - started))
        print(f"{dataset} {name + suffix}: NDCG@10 {kept['NDCG@10']:.4f} HR@10 {kept['HR@10']:.4f} "
              f"({kept['cases']} cases)", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--run-dir", help="default: runs/bench-<dataset>/llmrec")
    parser.add_argument("--users", type=int, help="a seeded sample of this many test users (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    run_dir = args.run_dir or f"runs/bench-{args.dataset}/llmrec"
    folder = Path(run_dir).name
    with tempfile.TemporaryDirectory() as scratch:  # no index to build, no items or events of serving
        recommender = Recommender.load(run_dir, [*args.overrides, "online.retrieval=exact", "online.rerank=false",
                                                 f"online.state_dir={scratch}/state"])
        try:
            records = interests_only_records(recommender, args.dataset, command, args.users,
                                             "" if folder == "llmrec" else f"-{folder}")
        finally:
            recommender.close()
    write_records(RESULTS, records)


if __name__ == "__main__":
    main()
