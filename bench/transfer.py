"""Domain transfer of the interest model between benchmark datasets: how well a model trained on one dataset
serves another, zero-shot and with LoRA adapters, against a model trained on the target from scratch. Writes
bench/results/transfer.json, one record per (target, variant): the target as `dataset`, the base dataset as
`base_dataset` and how long the base trained as `base_training` (epochs run, best epoch, validation NDCG@10).

    LLMREC_DATA_DIR=../shared/datasets python bench/transfer.py                        # both default pairs
    ... --pairs movielens-1m:amazon-beauty                                              # one pair, BASE:TARGET
    ... --variants transfer-zero-shot transfer-lora-10pct                              # some of the records
    ... --set interest.lr=0.003                                                         # target overrides
    ... --base-tag content10-e30     # base: the tuning run `bench/interest.py BASE --tag content10-e30` trained

The base is the benchmark's `llmrec` model of the base dataset (runs/bench-<base>/llmrec, trained by
bench/interest.py; with `--base-tag T`, runs/bench-<base>/llmrec@T, and the records are named `<variant>@T`).
On the target (its benchmark config and stored profiles, its test split):

    transfer-zero-shot    the base network transferred (`llmrec.transfer`), items scored by their text; no training
    transfer-lora-10pct   LoRA adapters trained on a seeded 10 % of the target's training users
    transfer-lora         LoRA adapters trained on all of them
    transfer-scratch      the target's own `llmrec` model (runs/bench-<target>/llmrec; trained when missing)

Adapters are written to runs/bench-<target>/transfer-from-<base>/adapters/. Metrics: NDCG@10, HR@10, adapter_mb
(size of the adapter folder; for transfer-scratch, of the whole model's weights) and train_s.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Iterator

from llmrec.errors import LlmrecError
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.experiment import Experiment
from llmrec.models.interest import InterestModel
from llmrec.transfer import BaseRun, adapt, transfer_to

sys.path.insert(0, str(Path(__file__).parent))
from interest import bench_config, evaluate  # noqa: E402
from records import make_record, training_metrics, write_records  # noqa: E402

BENCH = Path(__file__).parent
RESULTS = BENCH / "results" / "transfer.json"
DATASETS = sorted(p.stem for p in (BENCH / "configs").glob("*.yaml"))
DEFAULT_PAIRS = ["movielens-1m:amazon-beauty", "amazon-beauty:movielens-1m"]
LORA = {"transfer-lora-10pct": 0.1, "transfer-lora": 1.0}
"""LoRA variants and the share of the target's training users each trains on."""
VARIANTS = ["transfer-zero-shot", *LORA, "transfer-scratch"]


def pair(text: str) -> tuple[str, str]:
    """`BASE:TARGET` -> (base, target), both benchmark datasets."""
    base, _, target = text.partition(":")
    for name in (base, target):
        if name not in DATASETS:
            raise argparse.ArgumentTypeError(f"{text!r}: expected BASE:TARGET with datasets from {', '.join(DATASETS)}")
    if base == target:
        raise argparse.ArgumentTypeError(f"{text!r}: base and target must differ")
    return base, target


def measure(base_name: str, target_name: str, variants: list[str], overrides: list[str],
            command: str, base_tag: str | None = None) -> Iterator[dict]:
    """The records of one pair, one variant at a time (see VARIANTS); `base_tag` picks a tuning run's base."""
    name = f"{base_name}->{target_name}"
    suffix = f"@{base_tag}" if base_tag else ""
    base = BaseRun.load(Path("runs") / f"bench-{base_name}" / f"llmrec{suffix}")
    base_training = training_metrics(base.run_dir / "models" / "llmrec")[0]
    target = Experiment(bench_config(target_name, [
        f"run_dir=runs/bench-{target_name}/transfer-from-{base_name}{suffix}", *overrides]))
    target.save_config()
    evaluator = FullRankingEvaluator(target.split, target.config.eval)

    def record(variant: str, model: InterestModel, cost: dict, started: float) -> dict:
        results = evaluator.evaluate(model, desc=f"evaluate {variant}")
        metrics = {"NDCG@10": results["NDCG@10"], "HR@10": results["HR@10"], **cost}
        print(f"{name} {variant}: NDCG@10 {metrics['NDCG@10']:.4f} HR@10 {metrics['HR@10']:.4f}", flush=True)
        wall_s = time.perf_counter() - started
        return {**make_record(target_name, variant + suffix, metrics, command, target.config.seed, wall_s),
                "base_dataset": base_name, "base_training": base_training}

    for variant in variants:
        started = time.perf_counter()
        if variant == "transfer-zero-shot":
            yield record(variant, transfer_to(base, target).model, {"adapter_mb": 0.0, "train_s": 0.0}, started)
        elif variant in LORA:
            run = adapt(base, target, variant.removeprefix("transfer-"), LORA[variant])
            cost = {"adapter_mb": run.size_mb, "train_s": run.report.train_seconds,
                    "epochs_run": len(run.report.history), "best_epoch": run.report.best_epoch}
            yield record(variant, run.model, cost, started)
        else:
            own_run = Path("runs") / f"bench-{target_name}" / "llmrec"
            scratch = evaluate(target_name, "llmrec", variant, [f"run_dir={own_run}", *overrides], command)
            weights = own_run / "models" / "llmrec" / "weights.pt"
            scratch["metrics"]["adapter_mb"] = weights.stat().st_size / 2**20  # what ships instead of an adapter
            yield {**scratch, "base_dataset": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", type=pair, default=[pair(p) for p in DEFAULT_PAIRS],
                        metavar="BASE:TARGET", help=f"dataset pairs (default: {' '.join(DEFAULT_PAIRS)})")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS,
                        help="which records to make (default: all four)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override of the target's config (repeatable), also for transfer-scratch")
    parser.add_argument("--base-tag", help="the base is the tuning run bench/interest.py BASE --tag BASE_TAG "
                                           "trained (runs/bench-<base>/llmrec@BASE_TAG)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    try:
        for base_name, target_name in args.pairs:
            for record in measure(base_name, target_name, args.variants, args.overrides, command, args.base_tag):
                write_records(RESULTS, [record])
    except LlmrecError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
