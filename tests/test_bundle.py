"""The serving bundle on a real tiny run (tests/online_fixture.py): what `export_bundle` writes, loading a copy
from another working directory with the run and its raw data gone, the same lists as the run's own models,
clear errors for damaged bundles, state written beside the bundle's files, and `llmrec export`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from llmrec import pipeline
from llmrec.cli import app
from llmrec.config import load_config
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError
from llmrec.experiment import Experiment
from llmrec.models.interest import InterestModel
from llmrec.models.registry import load_model
from llmrec.pipeline import Recommender
from llmrec.ranking import rank
from llmrec.rerank.reranker import RerankScorer
from llmrec.serving.bundle import MANIFEST, Bundle, BundleError, export_bundle
from online_fixture import tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(run_dir, tmp_path_factory.mktemp("exported") / "bundle")


def copy_of(bundle: Path, folder: Path) -> Path:
    return Path(shutil.copytree(bundle, folder / "bundle"))


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def test_export_writes_a_versioned_bundle_with_a_checksum_for_every_file(exported: Path) -> None:
    manifest = manifest_of(exported)
    assert manifest["format_version"] == 1 and manifest["dataset"] == "generic" and manifest["created"]
    assert {"llmrec", "torch", "transformers", "chromadb"} <= set(manifest["versions"])
    assert manifest["models"]["encoder"].startswith("embedded:all-MiniLM-L6-v2")
    assert manifest["models"]["profile_writer"] == "template"
    files = manifest["files"]
    assert {"config.yaml", "model/weights.pt", "model/users.safetensors", "rerank/weights.pt", "split.npz",
            "catalog.parquet", "item_vectors.npy", "index/chroma.sqlite3", "profiles/long-term.jsonl.gz",
            "profiles/summaries.jsonl.gz"} <= set(files)
    on_disk = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()} - {MANIFEST}
    assert on_disk == set(files) and not any(name.startswith("/") or ".." in name for name in files)
    weights = torch.load(exported / "model" / "weights.pt", weights_only=True)
    assert "profiles" not in weights and "context" not in weights  # the feature store has its own file
    config = yaml.safe_load((exported / "config.yaml").read_text())
    assert config["run_dir"] == "." and config["profile"]["store"] is None and config["encoder"]["cache_dir"] is None


def test_a_copied_bundle_serves_from_another_folder_without_the_run_its_data_or_the_encoder(
        run_dir: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = copy_of(exported, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("LLMREC_DATA_DIR", raising=False)
    encoders: list[object] = []
    monkeypatch.setattr(pipeline, "ItemEncoder", lambda config: encoders.append(config) or ItemEncoder(config))
    root = run_dir.parent  # the run, its raw data and its embedding cache
    away = root.rename(root.with_name(root.name + "-away"))
    try:
        rec = Recommender.load(bundle)
        try:
            items = rec.recommend("u1", k=5)
            profile = rec.profile("u1")
            assert len(items) == 5 and profile["profile"]["text"] and not encoders  # known items: no encoder
            explanation = rec.explain("u1", items[0].item_id)
            assert explanation["text"] and len(encoders) == 1  # the profile's sentences are new text
        finally:
            rec.close()
    finally:
        away.rename(root)


def test_the_bundle_ranks_like_the_runs_own_models(run_dir: Path, exported: Path) -> None:
    experiment = Experiment(load_config(run_dir / "config.yaml", [f"run_dir={run_dir}"]))
    split = experiment.split
    users = np.arange(0, split.num_users, 4)
    histories = [split.sequences[u] for u in users]

    def top5(scorer) -> list[list[str]]:
        return [[split.item_id(int(i)) for i in row] for row in rank(scorer, users, histories, 5).items]

    for overrides, scorer in ((["online.rerank=false"], experiment.model("llmrec")),
                              ([], RerankScorer(experiment.reranker()))):
        rec = Recommender.load(exported, ["online.retrieval=exact", *overrides])
        try:
            served = [[r.item_id for r in rec.recommend(str(split.user_ids[u]), k=5)] for u in users]
        finally:
            rec.close()
        assert served == top5(scorer)


def test_a_damaged_bundle_is_a_clear_error_naming_the_file(exported: Path, tmp_path: Path) -> None:
    bundle = copy_of(exported, tmp_path)
    Bundle.load(bundle)
    weights = bundle / "model" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(BundleError, match=r"file model/weights\.pt is corrupted or truncated"):
        Recommender.load(bundle)
    shutil.copy2(exported / "model" / "weights.pt", weights)
    (bundle / "split.npz").unlink()
    with pytest.raises(BundleError, match=r"file split\.npz is missing"):
        Bundle.load(bundle)
    manifest = manifest_of(bundle)
    (bundle / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="has format 99; llmrec .* reads format 1 at most"):
        Bundle.load(bundle)
    with pytest.raises(BundleError, match="not an llmrec bundle"):
        Bundle.load(tmp_path)
    with pytest.raises(ConfigError, match="neither an llmrec bundle .* nor a run folder"):
        Recommender.load(tmp_path)


def test_serving_writes_its_state_beside_the_bundles_files(exported: Path, tmp_path: Path) -> None:
    bundle = copy_of(exported, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in bundle.rglob("*") if p.is_file()}
    state = tmp_path / "state"
    rec = Recommender.load(bundle, [f"online.state_dir={state}"])
    try:
        for item in ["i1", "i2", "i3"]:  # a profile refresh every 3 events (tiny_run)
            rec.add_interaction("newcomer", item)
        rec.wait_for_refreshes()
        rec.explain("newcomer", rec.recommend("newcomer", k=1)[0].item_id)
    finally:
        rec.close()
    assert {p: p.stat().st_mtime_ns for p in bundle.rglob("*") if p.is_file()} == before
    names = {p.name for p in state.iterdir()}
    assert {"events.sqlite", "profiles.sqlite"} <= names and any(n.startswith("index-") for n in names)  # summaries: a table
    again = Recommender.load(bundle, [f"online.state_dir={state}"])  # still verifies, and continues
    try:
        assert again.profile("newcomer")["history_length"] == 3
    finally:
        again.close()
    default = Recommender.load(bundle)
    try:
        assert default.bundle.state.folder == bundle / "state"
    finally:
        default.close()


def test_a_run_folder_is_served_through_its_bundle_exported_again_when_its_model_changes(
        run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="llmrec.serving.bundle"):
        rec = Recommender.load(run_dir)
    try:
        assert rec.bundle.path == run_dir / "bundle" and "none exported yet" in caplog.text
        rec.add_interaction("returning", "i4")
    finally:
        rec.close()
    caplog.clear()
    weights = run_dir / "models" / "llmrec" / "weights.pt"
    os.utime(weights)  # now: after the export
    with caplog.at_level("INFO", logger="llmrec.serving.bundle"):
        again = Recommender.load(run_dir)
    try:
        assert f"{weights} changed since it was exported" in caplog.text
        assert again.profile("returning")["history_length"] == 1  # the state folder survived the export
    finally:
        again.close()


def test_a_model_saved_with_its_features_in_the_weights_still_loads(exported: Path, tmp_path: Path) -> None:
    model = InterestModel.load(exported / "model")
    params, tensors = model.state()
    features = model.features
    params.update(context_names=features.context_names, context_values=features.context_values)
    tensors.update(profiles=torch.from_numpy(features.profiles), has_profile=torch.from_numpy(features.has_profile),
                   context=torch.from_numpy(features.context))
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(tensors, legacy / "weights.pt")
    (legacy / "model.json").write_text(json.dumps({"model": "llmrec", "params": params}))
    loaded = load_model(legacy)
    users, histories = np.arange(4), [np.array([1, 2, 3])] * 4
    assert torch.equal(loaded.score(users, histories), model.score(users, histories))


def test_export_command(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--help"])
    assert result.exit_code == 0 and "RUN_DIR" in result.output and "--out" in result.output
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"exported {tmp_path / 'b'}" in result.output and (tmp_path / "b" / MANIFEST).is_file()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "nothing")])
    assert isinstance(result.exception, ConfigError) and "not an llmrec run folder" in str(result.exception)
