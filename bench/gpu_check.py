"""CPU against a GPU on a small real dataset: the models trained on the CPU rank the same on the GPU, the encoder
encodes the same, and how long one training epoch and reranking take on each device. Writes `gpu-check-*`
records to bench/results/online.json (bench/gpu_check.sh runs it with the CUDA tests on a lent GPU machine).

    LLMREC_DATA_DIR=../shared/datasets python bench/gpu_check.py             # ML-100K, CPU against cuda
    python bench/gpu_check.py --device cpu --results /tmp/check.json         # a dry run: the CPU against itself

Models (sasrec, the interest model `llmrec` and its reranker) are trained for `--epochs` on the CPU under
`--run-dir`; a copy is moved to `--device` and both rank every test user's top 10 (history left out). The check
fails (exit 1) when the lists or the metrics disagree beyond float tolerance. Timings train the same models
again on each device from the same seed and report the last epoch (warm) and the reranker's time per query.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.config import RunConfig, load_config
from llmrec.data.split import Split
from llmrec.device import resolve_device
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.experiment import Experiment
from llmrec.models.base import Model, Scorer
from llmrec.models.interest import InterestModel
from llmrec.models.user_features import UserFeatures
from llmrec.models.registry import load_model, model_class
from llmrec.ranking import Exclusion, RankedItems, StagedScorer, rank, top_items
from llmrec.rerank.reranker import Reranker, RerankScorer

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "online.json"
MODELS = ("sasrec", InterestModel.name)
SECTIONS = {"sasrec": "sasrec", InterestModel.name: "interest"}
SCORE_TOLERANCE = 1e-3
"""Largest difference allowed between a score on the CPU and on the device (float32, different kernels)."""
SAME_LISTS = 0.98
"""Share of top-10 lists that must be identical (near-ties may swap)."""
QUERY_BATCH = 256


@dataclasses.dataclass
class FreshRun:
    """Builds models like the experiment does, but with checkpoints in a throwaway folder (a timing run must
    train, not resume)."""

    experiment: Experiment
    root: Path

    @property
    def split(self) -> Split:
        return self.experiment.split

    @property
    def item_vectors(self) -> np.ndarray:
        return self.experiment.item_vectors

    def user_features(self) -> UserFeatures:
        return self.experiment.user_features()

    def checkpoint_dir(self, name: str) -> Path:
        return self.root / name


def base_config(dataset: str, run_dir: str, epochs: int, overrides: list[str]) -> RunConfig:
    """The check's run: template profiles (no LLM), every model on the CPU, short training."""
    settings = [f"data.name={dataset}", f"run_dir={run_dir}", "profile.writer=template", "encoder.device=cpu",
                "rerank.device=cpu", f"rerank.epochs={epochs}"]
    for section in SECTIONS.values():
        settings += [f"{section}.device=cpu", f"{section}.epochs={epochs}", f"{section}.patience={epochs}"]
    return load_config(overrides=settings + overrides)


def on_device(config: RunConfig, device: str) -> RunConfig:
    """`config` with the models and the reranker on `device`."""
    sections = {section: dataclasses.replace(getattr(config, section), device=device)
                for section in (*SECTIONS.values(), "rerank")}
    return dataclasses.replace(config, **sections)


def agreement(cpu: RankedItems, other: RankedItems) -> dict[str, float]:
    """How far two rankings of the same queries differ."""
    same = (cpu.items == other.items).all(dim=1).float().mean().item()
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / len(a) for a, b in zip(cpu.items, other.items)])
    finite = torch.isfinite(cpu.scores) & torch.isfinite(other.scores)
    diff = (cpu.scores - other.scores)[finite].abs().max().item() if finite.any() else 0.0
    return {"same_top10": same, "overlap@10": float(overlap), "max_score_diff": diff}


def ranking_record(name: str, cpu_scorer: Scorer | StagedScorer, device_scorer: Scorer | StagedScorer, split: Split,
                   evaluator: FullRankingEvaluator) -> dict[str, float]:
    """Agreement of the two scorers' top 10 for every test user, and NDCG@10 of each."""
    cases = split.test
    with torch.no_grad():
        metrics = agreement(rank(cpu_scorer, cases.users, cases.histories, 10),
                            rank(device_scorer, cases.users, cases.histories, 10))
    metrics["NDCG@10_cpu"] = evaluator.evaluate(cpu_scorer, desc=f"{name} on cpu")["NDCG@10"]
    metrics["NDCG@10_device"] = evaluator.evaluate(device_scorer, desc=f"{name} on device")["NDCG@10"]
    return metrics


def agrees(metrics: dict[str, float]) -> bool:
    """Whether the CPU and the device rank the same within float tolerance."""
    return (metrics["same_top10"] >= SAME_LISTS and metrics["max_score_diff"] <= SCORE_TOLERANCE
            and abs(metrics["NDCG@10_cpu"] - metrics["NDCG@10_device"]) <= SCORE_TOLERANCE)


def epoch_seconds(name: str, experiment: Experiment, device: str) -> float:
    """The last (warm) training epoch of `name` trained afresh on `device`."""
    with tempfile.TemporaryDirectory() as folder:
        model = model_class(name).from_config(on_device(experiment.config, device), FreshRun(experiment, Path(folder)))
        model.fit(experiment.split)
    return model.report.history[-1].seconds


def rerank_ms_per_query(reranker: Reranker, split: Split) -> float:
    """Mean time to rerank one test query's candidates (batches of QUERY_BATCH, after one warm-up batch)."""
    cases = split.test
    batches = []
    for start in range(0, len(cases), QUERY_BATCH):
        rows = slice(start, start + QUERY_BATCH)
        histories = cases.histories[rows]
        queries = reranker.describe(cases.users[rows], histories)
        table = reranker.model.retrieval_table()
        candidates = top_items(reranker.model.retrieval_queries(queries.interest, histories) @ table.T,
                               Exclusion(histories), reranker.config.candidates)
        batches.append((queries, candidates))
    reranker.rerank(*batches[0])
    if reranker.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for queries, candidates in batches:
        reranker.rerank(queries, candidates)  # returns CPU tensors: the device work is done
    return 1000 * (time.perf_counter() - started) / len(cases)


def encoder_record(experiment: Experiment, device: str) -> dict[str, float]:
    """The largest difference between item text vectors encoded on the CPU and on `device` (no cache)."""
    catalog = experiment.dataset.catalog
    texts = catalog.texts()[:256]
    vectors = {d: ItemEncoder(dataclasses.replace(experiment.config.encoder, device=d, cache_dir=None))
               .encode(texts, catalog.text_template) for d in ("cpu", device)}
    return {"texts": len(texts), "max_abs_diff": float(np.abs(vectors["cpu"] - vectors[device]).max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (default cuda)")
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (the last one is timed)")
    parser.add_argument("--run-dir", default="runs/gpu-check")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "python " + shlex.join(["bench/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    device = str(resolve_device(args.device, "--device"))
    experiment = Experiment(base_config(args.dataset, args.run_dir, args.epochs, args.overrides))
    experiment.save_config()
    split, seed, started = experiment.split, experiment.config.seed, time.perf_counter()
    evaluator = experiment.evaluator()
    device_config = on_device(experiment.config, device)
    records, failed = [], []

    def record(model: str, metrics: dict) -> None:
        metrics = {"device": device, **metrics}
        records.append(make_record(args.dataset, model, metrics, command, seed, time.perf_counter() - started))
        print(f"{model}: {metrics}", flush=True)

    record("gpu-check-encoder", encoder_record(experiment, device))
    for name in MODELS:
        trained = experiment.model(name)  # trained on the CPU (or loaded from an earlier check)
        moved = load_model(experiment.model_dir(name)).use_settings(device_config)
        metrics = ranking_record(name, trained, moved, split, evaluator)
        metrics.update({"cpu_epoch_s": epoch_seconds(name, experiment, "cpu"),
                        "device_epoch_s": epoch_seconds(name, experiment, device)})
        record(f"gpu-check-{name}", metrics)
        if not agrees(metrics):
            failed.append(name)
    reranker = experiment.reranker(device="cpu")
    folder = experiment.model_dir(Reranker.name)
    moved_model: Model = load_model(experiment.model_dir(InterestModel.name)).use_settings(device_config)
    moved = Reranker.load(folder, moved_model, experiment.item_vectors, split.train_popularity(), device)
    metrics = ranking_record("llmrec-rerank", RerankScorer(reranker), RerankScorer(moved), split, evaluator)
    metrics.update({"candidates": reranker.config.candidates, "cpu_ms_per_query": rerank_ms_per_query(reranker, split),
                    "device_ms_per_query": rerank_ms_per_query(moved, split)})
    record("gpu-check-llmrec-rerank", metrics)
    if not agrees(metrics):
        failed.append("llmrec-rerank")
    write_records(args.results, records)
    if failed:
        print(f"CPU and {device} disagree for: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"CPU and {device} agree; records in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
