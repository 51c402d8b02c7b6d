"""The `llmrec` command line, run as a user runs it (a subprocess), on a tiny generic dataset."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import llmrec
from online_fixture import tiny_run
from synthetic import cyclic_dataset

LLMREC = [sys.executable, "-m", "llmrec"]
SOURCE_ROOT = str(Path(llmrec.__file__).resolve().parents[1])
"""The folder holding the llmrec package under test, put first on the subprocess's path (the installed llmrec
may be another checkout's)."""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    return subprocess.run([*LLMREC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with generic CSV + JSONL data and a config for a quick run."""
    root = tmp_path_factory.mktemp("cli")
    dataset = cyclic_dataset(num_users=40, num_items=25, length=8)
    dataset.interactions.events[["user_id", "item_id", "timestamp"]].rename(
        columns={"user_id": "uid", "item_id": "iid", "timestamp": "ts"}).to_csv(root / "events.csv", index=False)
    with open(root / "items.jsonl", "w") as out:
        for item_id, text in zip(dataset.catalog.ids, dataset.catalog.texts()):
            out.write(json.dumps({"id": item_id, "name": text, "genre": "demo"}) + "\n")
    config = {
        "run_dir": str(root / "run"),
        "models": ["popularity", "text-knn", "sasrec", "llmrec"],
        "data": {"name": "generic", "path": str(root), "generic": {
            "interactions": "events.csv", "items": "items.jsonl",
            "columns": {"user_id": "uid", "item_id": "iid", "timestamp": "ts"},
            "item_columns": {"item_id": "id", "title": "name"}, "text_template": "{title} ({genre})"}},
        "encoder": {"cache_dir": str(root / "cache")},
        "sasrec": {"hidden_size": 16, "num_blocks": 1, "max_len": 8, "epochs": 2, "eval_every": 1},
        "interest": {"hidden_size": 16, "num_blocks": 1, "max_len": 8, "epochs": 2, "eval_every": 1,
                     "num_negatives": 8},
        "profile": {"writer": "template", "recent_items": 2},
        "rerank": {"epochs": 2, "candidates": 10},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def test_run_does_the_whole_job(project):
    result = run_cli("run", "--config", "config.yaml", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    for step in ["[1/7] data: 40 users, 25 items", "[3/7] indexed", "[4/7] profiles by template: 40 written",
                 "[6/7] trained the reranker", "[7/7] test metrics", "sasrec", "llmrec-rerank",
                 "long-term profile: Enjoys", "interest weights: long-term", "top 5 for user", "why #1",
                 "the new top 3", f"serving bundle: {project / 'run' / 'bundle'}"]:
        assert step in result.stdout
    assert (project / "run" / "bundle" / "bundle.json").is_file()
    evaluation = json.loads((project / "run" / "results" / "evaluation.json").read_text())
    assert set(evaluation) == {"popularity", "text-knn", "sasrec", "llmrec", "llmrec-retrieval-only",
                               "llmrec-rerank"}
    for model in ("sasrec", "llmrec", "rerank"):
        assert (project / "run" / "models" / model / "model.json").is_file()


def test_recommend_and_data_commands(project):
    result = run_cli("recommend", "--config", "config.yaml", "--user", "u3", "--k", "4", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    first = lines[0].split("[", 1)[1].split("]", 1)[0]
    again = run_cli("recommend", "--config", "config.yaml", "--user", "u3", "--k", "4", "--exclude", first,
                    "--mode", "hybrid", cwd=project)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(again.stdout.strip().splitlines()) == 4 and f"[{first}]" not in again.stdout
    assert "<" in again.stdout  # hybrid lists tag each item
    stats = json.loads(run_cli("data", "--config", "config.yaml", cwd=project).stdout)
    assert stats["users"] == 40 and stats["test_cases"] == 40


def test_recommend_never_trains(project):
    fresh = ["--config", "config.yaml", "--set", "run_dir=untrained"]
    assert run_cli("data", *fresh, cwd=project).returncode == 0  # a run folder with its config, no model
    result = run_cli("recommend", *fresh, "--user", "u3", cwd=project)
    assert result.returncode == 2 and "llmrec train" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "untrained" / "models").exists()


def test_recommend_from_stated_interests(tmp_path_factory):
    run_dir = tiny_run(tmp_path_factory)
    result = run_cli("recommend", "--config", "config.yaml", "--interests", "item number 3", "--k", "3", cwd=run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) == 3
    empty = run_cli("recommend", "--config", "config.yaml", "--interests", " ", cwd=run_dir)
    assert empty.returncode == 2 and "interests is empty" in empty.stderr and "Traceback" not in empty.stderr


@pytest.mark.parametrize("args, message", [
    (["recommend", "--config", "config.yaml", "--user", "nobody"], "unknown user id 'nobody'"),
    (["recommend", "--config", "config.yaml"], "give exactly one of --user and --interests"),
    (["data", "--config", "config.yaml", "--set", "data.generic.items=missing.jsonl"], "file not found"),
    (["train", "--config", "config.yaml", "--model", "bert"], "unknown model 'bert'"),
    (["data", "--config", "nope.toml"], "config file not found"),
    (["data", "--set", "sasrec.epochs=many"], "sasrec.epochs must be int"),
    (["profile", "--config", "config.yaml", "--user", "nobody"], "unknown user id 'nobody'"),
    (["profile", "--config", "config.yaml", "--set", "profile.preload=missing.jsonl.gz"], "file not found"),
    (["profile", "--config", "config.yaml", "--set", "profile.writer=llm", "--set", "llm.model=/no/such.gguf"],
     "GGUF file not found"),
    (["profile", "tune", "--config", "config.yaml", "--shard", "2/2"], "a shard is K/N with 0 <= K < N, got 2/2"),
    (["profile", "tune", "--config", "config.yaml", "--shard", "half"], "a shard is K/N with 0 <= K < N, got 'half'"),
])
def test_bad_input_gives_one_clear_line(project, args, message):
    result = run_cli(*args, cwd=project)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_help():
    from typer.testing import CliRunner

    from llmrec.cli import app

    for command in ["data", "embed", "index", "train", "rerank", "evaluate", "recommend", "run", "serve"]:
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--config" in result.output, command


def test_profile_command_writes_resumes_and_exports(project):
    args = ["profile", "--config", "config.yaml", "--set", "profile.store=own-store.sqlite"]  # not `run`'s store
    first = run_cli(*args, "--export", "profiles.jsonl.gz", cwd=project)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "40 profiles written, 0 already stored" in first.stdout and (project / "profiles.jsonl.gz").is_file()
    again = run_cli(*args, cwd=project)
    assert "0 profiles written, 40 already stored" in again.stdout
    one = run_cli(*args, "--user", "u3", cwd=project)
    profile = json.loads(one.stdout)
    assert profile["user_id"] == "u3" and profile["text"].startswith("Enjoys demo")


def test_profile_command_with_the_embedded_llm(project):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/bootstrap.sh installs it)")
    result = run_cli("profile", "--config", "config.yaml", "--limit", "2", "--set", "profile.writer=llm",
                     "--set", "profile.max_tokens=24", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 profiles written" in result.stdout and "users/min" in result.stdout
    report = json.loads((project / "run" / "results" / "profiles.json").read_text())
    assert report["model_id"].startswith("llamacpp:") and report["writer"]["profiles"] == 2
