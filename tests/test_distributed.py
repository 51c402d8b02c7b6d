"""Data-parallel training with two CPU processes (torchrun + gloo), as a user launches it; on a machine with
GPUs too, where the process group also holds NCCL but a model on the CPU must use gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from synthetic import cyclic_dataset


def test_torchrun_trains_the_interest_model_with_two_processes(tmp_path: Path):
    dataset = cyclic_dataset(num_users=40, num_items=20, length=10)
    dataset.interactions.events[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "events.csv", index=False)
    dataset.catalog.items.to_csv(tmp_path / "items.csv", index=False)
    config = {
        "run_dir": str(tmp_path / "run"), "models": ["llmrec"],
        "data": {"name": "generic", "path": str(tmp_path),
                 "generic": {"interactions": "events.csv", "items": "items.csv", "text_template": "{text}"}},
        "encoder": {"cache_dir": None},
        "profile": {"writer": "template", "recent_items": 3},
        "interest": {"profile_source": "template", "hidden_size": 16, "epochs": 3, "batch_size": 8,
                     "num_negatives": 8, "threads": 1, "device": "cpu"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "llmrec", "train", "--config", "config.yaml", "--model", "llmrec"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2 processes" in result.stderr and "rank 1 of 2 processes" in result.stderr
    assert result.stdout.count("trained llmrec") == 1  # only rank 0 reports and saves
    training = json.loads((tmp_path / "run" / "models" / "llmrec" / "training.json").read_text())
    assert training["epochs_run"] == 3
