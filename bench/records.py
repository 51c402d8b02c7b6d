"""Benchmark result records: one JSON list per results file, one record per (dataset, model).

    record = make_record("amazon-beauty", "sasrec", {"ndcg@10": 0.05}, command, seed=42, wall_s=812.0)
    write_records(Path("bench/results/baselines.json"), [record])
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any


def machine_description() -> str:
    """CPU model and usable cores, plus the GPU when torch sees one, e.g. `AMD EPYC, 2 cores`."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    description = f"{cpu}, {cores} cores"
    try:
        import torch
    except ImportError:
        return description
    if torch.cuda.is_available():
        description += f", GPU {torch.cuda.get_device_name(0)}"
    return description


def make_record(dataset: str, model: str, metrics: dict, command: str, seed: int, wall_s: float) -> dict:
    """One result record, stamped with this machine and today's date."""
    return {"dataset": dataset, "model": model, "metrics": metrics, "command": command, "seed": seed,
            "wall_s": round(wall_s, 2), "machine": machine_description(),
            "date": datetime.date.today().isoformat()}


def write_records(path: Path, records: list[dict]) -> None:
    """Merge `records` into the JSON list at `path`: a record replaces the stored one with the same
    (dataset, model), others are kept; the list is sorted by (dataset, model) and written atomically."""
    path = Path(path)
    stored: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    replaced = {(r["dataset"], r["model"]) for r in records}
    merged = [r for r in stored if (r["dataset"], r["model"]) not in replaced] + list(records)
    merged.sort(key=lambda r: (r["dataset"], r["model"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


TRAINING_KEYS = ["epoch_s", "train_seconds", "epochs_run", "best_epoch", "best_valid", "peak_rss_mb"]


def training_metrics(model_dir: Path) -> tuple[dict[str, Any], list[dict] | None]:
    """Cost numbers from a trained model's training.json (`train_seconds` reported as `train_s`) and its
    learning curve; ({}, None) for models that do not train."""
    path = Path(model_dir) / "training.json"
    if not path.is_file():
        return {}, None
    report = json.loads(path.read_text(encoding="utf-8"))
    metrics = {("train_s" if k == "train_seconds" else k): report[k] for k in TRAINING_KEYS if k in report}
    return metrics, report.get("learning_curve")
