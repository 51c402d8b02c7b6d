"""bench/gpu_check.py as a dry run (the CPU against itself) on a tiny generic dataset: it trains, compares,
times and writes its records (on a GPU machine bench/gpu_check.sh runs it against cuda)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from synthetic import cyclic_dataset

GPU_CHECK = Path(__file__).parent.parent / "bench" / "gpu_check.py"


def test_the_dry_run_checks_and_times_every_model_and_writes_its_records(tmp_path: Path, monkeypatch):
    dataset = cyclic_dataset(num_users=30, num_items=25, length=10)
    dataset.interactions.events[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "events.csv", index=False)
    dataset.catalog.items.to_csv(tmp_path / "items.csv", index=False)
    spec = importlib.util.spec_from_file_location("bench_gpu_check", GPU_CHECK)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, gpu_check)  # its dataclasses look their module up
    spec.loader.exec_module(gpu_check)
    small = {"data.path": tmp_path, "data.k_core": 0, "data.generic.interactions": "events.csv",
             "data.generic.items": "items.csv", "data.generic.text_template": "{text}",
             "encoder.cache_dir": tmp_path / "cache", "profile.recent_items": 3, "rerank.candidates": 10,
             "sasrec.hidden_size": 16, "sasrec.max_len": 8, "interest.hidden_size": 16, "interest.num_negatives": 8}
    for section in ("sasrec", "interest", "rerank"):
        small.update({f"{section}.batch_size": 16, f"{section}.threads": 1})
    overrides = [item for key, value in small.items() for item in ("--set", f"{key}={value}")]
    results = tmp_path / "online.json"
    code = gpu_check.main(["--device", "cpu", "--dataset", "generic", "--run-dir", str(tmp_path / "run"),
                           "--results", str(results), *overrides])
    assert code == 0
    records = {r["model"]: r for r in json.loads(results.read_text())}
    assert set(records) == {"gpu-check-encoder", "gpu-check-sasrec", "gpu-check-llmrec", "gpu-check-llmrec-rerank"}
    assert records["gpu-check-encoder"]["metrics"]["max_abs_diff"] < 1e-5
    for name in ("sasrec", "llmrec", "llmrec-rerank"):
        metrics = records[f"gpu-check-{name}"]["metrics"]
        assert metrics["device"] == "cpu" and metrics["same_top10"] == 1.0
        assert metrics["NDCG@10_cpu"] == metrics["NDCG@10_device"]
    assert records["gpu-check-sasrec"]["metrics"]["device_epoch_s"] > 0
    assert records["gpu-check-llmrec-rerank"]["metrics"]["device_ms_per_query"] > 0
