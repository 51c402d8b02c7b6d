"""Baselines under the published protocol (leave-one-out, full ranking): popularity, text-kNN, item-kNN,
user-kNN and SASRec, trained and evaluated in one run per dataset. Writes bench/results/baselines.json and
the SASRec learning curves to bench/results/sasrec_learning_curves.json.

    LLMREC_DATA_DIR=../shared/datasets python bench/baselines.py movielens-100k movielens-1m amazon-beauty

Training resumes from run_dir/models/sasrec/checkpoints, so a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from llmrec.config import load_config
from llmrec.experiment import Experiment

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, training_metrics, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CONFIGS = Path(__file__).parent / "configs"
REPORTED = ["NDCG@5", "NDCG@10", "NDCG@20", "HR@5", "HR@10", "HR@20", "MRR", "Precision@10", "Recall@10",
            "Coverage@10", "NDCG@10-tail-users", "HR@10-tail-users", "NDCG@10-tail-items", "HR@10-tail-items"]


def run(dataset: str, overrides: list[str]) -> list[dict]:
    config = load_config(CONFIGS / f"{dataset}.yaml", overrides)
    experiment = Experiment(config)
    experiment.save_config()
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    records = []
    for name in config.models:
        started = time.perf_counter()
        results = experiment.evaluate([name])[name]
        metrics = {k: results[k] for k in REPORTED if k in results}
        metrics["cases"] = results["cases"]
        training, curve = training_metrics(experiment.model_dir(name))
        metrics.update(training)
        if curve:
            _save_curve(dataset, name, curve)
        records.append(make_record(dataset, name, metrics, command, config.seed, time.perf_counter() - started))
        print(f"{dataset} {name}: NDCG@10 {metrics['NDCG@10']:.4f} HR@10 {metrics['HR@10']:.4f}", flush=True)
    return records


def _save_curve(dataset: str, model: str, curve: list[dict]) -> None:
    path = RESULTS / "sasrec_learning_curves.json"
    curves = json.loads(path.read_text()) if path.is_file() else {}
    curves[f"{dataset}/{model}"] = curve
    path.write_text(json.dumps(curves, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", choices=[p.stem for p in CONFIGS.glob("*.yaml")])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for dataset in args.datasets:
        write_records(RESULTS / "baselines.json", run(dataset, args.overrides))


if __name__ == "__main__":
    main()
