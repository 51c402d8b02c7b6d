"""bench/online.py names its records after the run it serves, so runs of different variants stay apart; the
add-item and interests-only benchmarks run on a tiny trained run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llmrec.pipeline import Recommender
from online_fixture import tiny_run

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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_ONLINE.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_add_item_latency_leaves_the_run_as_it_was(online, run_dir):
    record = online.add_item_record(str(run_dir), [], "tiny", 6, "cmd", seed=0)
    assert record["model"] == "add-item-latency"
    metrics = record["metrics"]
    assert metrics["items"] == 6 and metrics["retrieval"] == "index" and 0 <= metrics["included_share"] <= 1
    assert 0 < metrics["add_p50_ms"] <= metrics["add_p99_ms"]
    assert 0 < metrics["first_recommend_p50_ms"] <= metrics["first_recommend_p99_ms"]
    state = run_dir / "bundle" / "state"  # the bundle's default state folder: untouched, items went to a scratch one
    assert not (state / "items.sqlite").exists() and not (state / "events.sqlite").exists()


def test_interests_only_is_evaluated_beside_popularity(run_dir):
    interests_only = bench_module("interests_only")
    rec = Recommender.load(run_dir, ["online.retrieval=exact", "online.rerank=false"])
    try:
        records = interests_only.interests_only_records(rec, "tiny", "cmd", users=30)
    finally:
        rec.close()
    assert [r["model"] for r in records] == ["interests-only", "popularity"]
    for record in records:
        assert {"NDCG@10", "HR@10"} <= set(record["metrics"]) and record["metrics"]["cases"] == 30
