"""bench/online.py names its records after the run it serves, so runs of different variants stay apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH_ONLINE = Path(__file__).parent.parent / "bench" / "online.py"


@pytest.fixture(scope="module")
def online():
    spec = importlib.util.spec_from_file_location("bench_online", BENCH_ONLINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("run_dir", "model", "expected"), [
    ("runs/bench-movielens-1m/llmrec", "llmrec-rerank", "llmrec-rerank"),
    ("runs/bench-movielens-1m/llmrec@lr2", "llmrec-rerank", "llmrec-rerank@lr2"),
    ("runs/bench-movielens-1m/llmrec-graph-longterm@lr2", "llmrec-rerank", "llmrec-graph-longterm-rerank@lr2"),
    ("runs/bench-movielens-1m/llmrec-graph-longterm@lr2", "llmrec", "llmrec-graph-longterm@lr2"),
    ("runs/bench-movielens-1m/llmrec@lr2", "recommend-latency", "recommend-latency@lr2"),
    ("runs/bench-movielens-1m/llmrec-gru@lr2", "recommend-latency", "recommend-latency-llmrec-gru@lr2"),
    ("runs/bench-amazon-beauty/llmrec-template-profile", "explain", "explain-llmrec-template-profile"),
    ("runs/bench-amazon-beauty/llmrec", "explain", "explain"),
])
def test_records_carry_the_served_variant_and_tag(online, run_dir, model, expected):
    record = online.served({"model": model, "metrics": {}}, run_dir)
    assert record["model"] == expected
    assert record["metrics"]["served_model"] == Path(run_dir).name
