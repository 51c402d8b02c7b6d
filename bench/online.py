"""The online path on a trained benchmark run: retrieval alone vs retrieval + rerank (full ranking, test split),
the latency of `Recommender.recommend` (ChromaDB retrieval + rerank, warm, k=10, N=200), hybrid tagged lists vs
the default list (NDCG@10 and intra-list diversity), the latency of adding an item while serving and of the first
list after it, and the quality of LLM explanations on random users (`explain-quality`, beside
`explain-quality-unconstrained`: the same users without grammar or retries). Writes bench/results/online.json.

    LLMREC_DATA_DIR=../shared/datasets python bench/online.py amazon-beauty
    ... --run-dir runs/bench-amazon-beauty/llmrec    the run whose `llmrec` model is served (bench/interest.py
                                                      trains it there); the reranker is trained there if missing
    ... --run-dir runs/bench-movielens-1m/llmrec@lr2 a tuning or variant run's folder, whose name goes
                                                      into the record names (`llmrec-rerank@lr2`)
    ... --requests 1000 --explanations 200 --new-items 200

The HTTP service has its own load test: bench/service.py.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llmrec.config import load_config
from llmrec.experiment import Experiment
from llmrec.online.hybrid import HybridScorer
from llmrec.pipeline import Recommender

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, training_metrics, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "online.json"
UNCONSTRAINED = ["online.explain_grammar=false", "online.explain_attempts=1"]
EXPLAIN_WAIT_S = 600.0
"""The explanation record measures the LLM's sentences, so each waits for the LLM (a server gives up sooner)."""
REPORTED = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "NDCG@10-tail-users", "NDCG@10-tail-items",
            "diversity@10", "novelty@10"]


def rerank_records(experiment: Experiment, dataset: str, command: str, seed: int) -> list[dict]:
    """`llmrec-retrieval-only` and `llmrec-rerank` on the test split (the reranker trains first if missing)."""
    started = time.perf_counter()
    results = experiment.evaluate_rerank()
    training, _ = training_metrics(experiment.model_dir("rerank"))
    records = []
    for name, metrics in results.items():
        kept = {k: metrics[k] for k in REPORTED if k in metrics}
        if name == "llmrec-rerank":
            kept.update(training)
        records.append(make_record(dataset, name, kept, command, seed, time.perf_counter() - started))
        print(f"{dataset} {name}: NDCG@10 {kept['NDCG@10']:.4f} HR@10 {kept['HR@10']:.4f}", flush=True)
    return records


def hybrid_records(recommender: Recommender, experiment: Experiment, dataset: str, command: str,
                   seed: int) -> list[dict]:
    """The interest model's default list (`llmrec`) vs its hybrid tagged list (`llmrec-hybrid`), same cases."""
    evaluator = experiment.evaluator()
    records = []
    for name, scorer in (("llmrec", recommender.model),
                         ("llmrec-hybrid", HybridScorer(recommender.model, recommender.config.online.hybrid_mix,
                                                        max(experiment.config.eval.ks)))):
        started = time.perf_counter()
        metrics = evaluator.evaluate(scorer, desc=f"evaluate {name}")
        kept = {k: metrics[k] for k in REPORTED if k in metrics}
        records.append(make_record(dataset, name, kept, command, seed, time.perf_counter() - started))
        print(f"{dataset} {name}: NDCG@10 {kept['NDCG@10']:.4f} diversity@10 {kept['diversity@10']:.4f}",
              flush=True)
    return records


def latency_record(recommender: Recommender, dataset: str, requests: int, command: str, seed: int) -> dict:
    """p50/p99 of `recommend(user, k=10)` for random test users after a warm-up."""
    rng = np.random.default_rng(seed)
    users = [str(u) for u in recommender.split.user_ids[rng.integers(0, recommender.split.num_users, requests)]]
    for user in users[:50]:
        recommender.recommend(user, k=10)
    timings = []
    started = time.perf_counter()
    for user in users:
        t0 = time.perf_counter()
        recommender.recommend(user, k=10)
        timings.append(1000 * (time.perf_counter() - t0))
    metrics = {"requests": requests, "p50_ms": float(np.percentile(timings, 50)),
               "p99_ms": float(np.percentile(timings, 99)), "mean_ms": float(np.mean(timings)),
               "candidates": recommender.config.rerank.candidates, "k": 10,
               "retrieval": recommender.health()["retrieval"], "reranker": recommender.reranker is not None}
    print(f"{dataset} recommend latency: p50 {metrics['p50_ms']:.2f} ms, p99 {metrics['p99_ms']:.2f} ms",
          flush=True)
    return make_record(dataset, "recommend-latency", metrics, command, seed, time.perf_counter() - started)


def add_item_record(run_dir: str, overrides: list[str], dataset: str, items: int, command: str, seed: int) -> dict:
    """p50/p99 of `add_item` and of the first `recommend(user, k=10)` after it, for `items` new items: each is a
    random test user's top recommendation written again under a new id (no trained ID row: scored by its text and
    its text neighbours' ID parts, `interest.new_item_neighbours`), asked
    for by that user at once; `included_share` is the share of those first lists that hold it. The items and
    their item log and index live in a scratch state folder, removed afterwards: the run and its bundle are left as
    they were (measure with the embedded index: a Chroma server, `index.host`, would keep the added vectors)."""
    with tempfile.TemporaryDirectory() as scratch:
        recommender = Recommender.load(run_dir, [*overrides, f"online.state_dir={scratch}/state"])
        rng = np.random.default_rng(seed + 2)
        users = [str(u) for u in recommender.split.user_ids[rng.integers(0, recommender.split.num_users, items)]]
        for user in users[:20]:
            recommender.recommend(user, k=10)
        add_ms, first_ms, included = [], [], 0
        started = time.perf_counter()
        for n, user in enumerate(users):
            (top,) = recommender.recommend(user, k=1)
            item_id = f"bench-new-{n}"
            t0 = time.perf_counter()
            recommender.add_item(item_id, top.text, title=f"New {n}")
            t1 = time.perf_counter()
            listed = recommender.recommend(user, k=10)
            t2 = time.perf_counter()
            add_ms.append(1000 * (t1 - t0))
            first_ms.append(1000 * (t2 - t1))
            included += item_id in {r.item_id for r in listed}
        wall_s = time.perf_counter() - started
        health = recommender.health()
        metrics = {"items": items, "add_p50_ms": float(np.percentile(add_ms, 50)),
                   "add_p99_ms": float(np.percentile(add_ms, 99)),
                   "first_recommend_p50_ms": float(np.percentile(first_ms, 50)),
                   "first_recommend_p99_ms": float(np.percentile(first_ms, 99)),
                   "included_share": included / items, "catalog_items": recommender.items.catalog_size,
                   "new_item_boost": recommender.config.interest.new_item_boost,
                   "new_item_neighbours": recommender.config.interest.new_item_neighbours,
                   "retrieval": health["retrieval"], "reranker": health["reranker"]}
        recommender.close()
    print(f"{dataset} add_item latency: p50 {metrics['add_p50_ms']:.2f} ms, p99 {metrics['add_p99_ms']:.2f} ms; "
          f"first list p50 {metrics['first_recommend_p50_ms']:.2f} ms, holds the item in "
          f"{metrics['included_share']:.0%}", flush=True)
    return make_record(dataset, "add-item-latency", metrics, command, seed, wall_s)


def explanation_record(recommender: Recommender, dataset: str, users: int, command: str, seed: int,
                       name: str = "explain-quality") -> dict:
    """Explain each random user's top recommendation: what is served (title and category faithfulness of the
    served text, re-checked with the shared claim checker), how much of it the LLM wrote (`llm_acceptance`), and
    the fallbacks and rejected tries by reason."""
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(recommender.split.num_users, size=min(users, recommender.split.num_users), replace=False)
    started = time.perf_counter()
    claims = recommender.explainer.claims
    title_ok = category_ok = 0
    for user in chosen:
        user_id = str(recommender.split.user_ids[user])
        (top,) = recommender.recommend(user_id, k=1)
        served = recommender.explain(user_id, top.item_id, timeout_s=EXPLAIN_WAIT_S)
        allowed = set(recommender.users.history(recommender.users.index(user_id)).tolist())
        report = claims.check(served["text"], allowed | {recommender.split.item_index(top.item_id)})
        title_ok += not report.unsupported["title"]
        category_ok += not report.unsupported["category"]
    stats = recommender.explainer.stats.to_dict()
    online = recommender.config.online
    metrics = {"title_faithfulness": title_ok / len(chosen), "category_faithfulness": category_ok / len(chosen),
               "llm_acceptance": stats["llm"] / stats["explanations"], "explanations": stats["explanations"],
               "fallbacks": stats["fallbacks"], "rejections": stats["rejections"], "retries": stats["retries"],
               "raw_title_faithfulness": stats["faithfulness"], "grammar": recommender.explainer.grammar,
               "attempts": online.explain_attempts, "llm_model": recommender.config.llm.model}
    print(f"{dataset} {name}: {metrics}", flush=True)
    return make_record(dataset, name, metrics, command, seed, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--run-dir", help="default: runs/bench-<dataset>/llmrec")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--explanations", type=int, default=200)
    parser.add_argument("--new-items", type=int, default=200, help="items added by the add-item benchmark")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["rerank", "hybrid", "latency", "add-item", "explain", "unconstrained"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    run_dir = args.run_dir or f"runs/bench-{args.dataset}/llmrec"
    experiment = Experiment(load_config(Path(run_dir) / "config.yaml", [f"run_dir={run_dir}", *args.overrides]))
    seed = experiment.config.seed

    def write(records: list[dict]) -> None:
        write_records(RESULTS, [served(r, run_dir) for r in records])

    if "rerank" not in args.skip:
        write(rerank_records(experiment, args.dataset, command, seed))
    recommender = Recommender.load(run_dir, args.overrides)  # served through the run's bundle, with the reranker
    if "hybrid" not in args.skip:
        write(hybrid_records(recommender, experiment, args.dataset, command, seed))
    if "latency" not in args.skip:
        write([latency_record(recommender, args.dataset, args.requests, command, seed)])
    if "explain" not in args.skip:
        write([explanation_record(recommender, args.dataset, args.explanations, command, seed)])
    if "explain" not in args.skip and "unconstrained" not in args.skip:
        recommender.close()
        # the same users in the same run, explained as before grammar and retries: the baseline
        recommender = Recommender.load(run_dir, [*args.overrides, *UNCONSTRAINED])
        write([explanation_record(recommender, args.dataset, args.explanations, command, seed,
                                  "explain-quality-unconstrained")])
    recommender.close()
    if "add-item" not in args.skip:
        write([add_item_record(run_dir, args.overrides, args.dataset, args.new_items, command, seed)])


def served(record: dict, run_dir: str) -> dict:
    """Name, in the record, the trained interest-model variant this run serves (its run folder's name), and carry
    the folder's variant and tuning tag into the record's name, so records of different runs stay apart: served
    from `llmrec-graph-longterm@lr2`, `llmrec-rerank` becomes `llmrec-graph-longterm-rerank@lr2` and
    `recommend-latency` becomes `recommend-latency-llmrec-graph-longterm@lr2`."""
    folder = Path(run_dir).name
    variant, _, tag = folder.partition("@")
    record["metrics"]["served_model"] = folder
    if variant.startswith("llmrec"):
        if record["model"].startswith("llmrec"):
            record["model"] = variant + record["model"].removeprefix("llmrec")
        elif variant != "llmrec":
            record["model"] += "-" + variant
    if tag:
        record["model"] += "@" + tag
    return record


if __name__ == "__main__":
    main()
