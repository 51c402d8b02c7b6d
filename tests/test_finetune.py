"""Domain transfer of the interest model: zero-shot weights, LoRA fine-tuning, adapters on disk, the facade with
an adapter, and `llmrec finetune`."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch
import uvicorn
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmrec.cli import app, main
from llmrec.config import EvalConfig, InterestConfig, load_config
from llmrec.data.split import make_split
from llmrec.errors import ConfigError
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.experiment import Experiment
from llmrec.models.interest import InterestModel
from llmrec.models.user_features import UserFeatures
from llmrec.pipeline import Recommender
from llmrec.transfer import (apply_adapter, check_fraction, finetune, load_adapter, sample_users, save_adapter,
                             transfer)
from online_fixture import generic_config, tiny_run
from synthetic import cyclic_dataset

WINDOW = 4
FAST = InterestConfig(hidden_size=32, epochs=20, eval_every=2, patience=3, num_negatives=16, batch_size=32,
                      threads=1)
TEXT_DIM = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def domain(num_users: int, num_items: int, seed: int, context: dict[str, list[str]]):
    """A cyclic domain with its own random item texts, profiles and user context."""
    split = make_split(cyclic_dataset(num_users=num_users, num_items=num_items, length=10, seed=seed))
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(split.num_items + 1, TEXT_DIM)).astype(np.float32)
    text[0] = 0
    profiles = rng.normal(size=(split.num_users, TEXT_DIM)).astype(np.float32)
    ids = np.stack([rng.integers(1, len(v) + 1, size=split.num_users) for v in context.values()], axis=1)
    inputs = UserFeatures(profiles, np.ones(split.num_users, dtype=bool), ids, [len(v) for v in context.values()],
                          list(context), list(context.values()))
    return split, text, inputs


def valid_ndcg(model: InterestModel, split) -> float:
    return FullRankingEvaluator(split, EvalConfig(ks=[10])).evaluate(model, split.valid)["NDCG@10"]


@pytest.fixture(scope="module")
def base():
    """A model trained on a 20-item domain with one context feature (gender)."""
    split, text, inputs = domain(50, 20, seed=0, context={"gender": ["F", "M"]})
    return InterestModel(text, inputs, WINDOW, FAST, seed=1).fit(split)


@pytest.fixture(scope="module")
def target():
    """Another domain: 30 items with other texts, the base's gender feature and a new one (device)."""
    return domain(40, 30, seed=3, context={"gender": ["F", "M"], "device": ["mobile", "web", "tv"]})


def transferred(base, target, config: InterestConfig = FAST):
    _, text, inputs = target
    return transfer(base, text, inputs, WINDOW, config, seed=2)


@pytest.fixture(scope="module")
def tuned(base, target):
    """(transferred and fine-tuned, peft wrapper, validation NDCG@10 zero-shot)."""
    split = target[0]
    result = transferred(base, target)
    zero_shot = valid_ndcg(result.model, split)
    adapted = finetune(result, split)
    return result, adapted, zero_shot


def test_zero_shot_transfer_copies_shared_weights_and_scores_the_new_catalog(base, target):
    split = target[0]
    result = transferred(base, target, dataclasses.replace(FAST, hidden_size=16, max_len=7, fusion="sum"))
    model = result.model
    # the base's architecture and positions, the target's training settings; items by their text alone
    assert (model.config.hidden_size, model.config.fusion, model.max_len) == (32, "gate", WINDOW)
    assert model.net.items.id_embedding is None and not model.config.use_ids
    base_state, state = base.net.state_dict(), model.net.state_dict()
    assert result.fresh == ["context.1.weight"] and result.new_modules == ["context.1"]
    assert sorted(result.copied) == sorted(set(base_state) - {"items.id_embedding.weight"})
    for key in result.copied:
        assert torch.equal(state[key], base_state[key]), key
    assert torch.count_nonzero(state["context.1.weight"]) == 0  # the new device feature adds nothing yet
    scores = model.score(split.test.users[:5], split.test.histories[:5])
    assert scores.shape == (5, 31) and torch.isfinite(scores).all()


def test_the_content_score_and_its_learned_weight_transfer_with_the_architecture(base, target):
    model = transferred(base, target, dataclasses.replace(FAST, content_weight=None)).model  # the base's rules
    assert model.config.content_weight == base.config.content_weight is not None
    assert not torch.isclose(base.net.content.log_weight, torch.tensor(math.log(base.config.content_weight)))
    assert torch.equal(model.net.content.log_weight, base.net.content.log_weight)  # learned, then carried
    split, text, inputs = domain(50, 20, seed=0, context={"gender": ["F", "M"]})
    plain = InterestModel(text, inputs, WINDOW, dataclasses.replace(FAST, epochs=2, content_weight=None),
                          seed=1).fit(split)
    without = transferred(plain, target).model  # the target's config has the content score (the default)
    assert without.config.content_weight is None and without.net.content is None


def test_context_features_transfer_only_with_the_same_values(base, target):
    split, text, inputs = target
    reordered = dataclasses.replace(inputs, context_values=[["M", "F"], ["mobile", "web", "tv"]])
    result = transfer(base, text, reordered, WINDOW, FAST)
    assert result.fresh == ["context.0.weight", "context.1.weight"]


def test_time_features_the_base_lacks_start_new(base, target):
    result = transferred(base, target, dataclasses.replace(FAST, time_features=True))
    time_modules = ["hour", "short_term.gap", "weekday"]
    assert sorted(result.fresh) == ["context.1.weight", *[f"{m}.weight" for m in time_modules]]
    assert result.new_modules == ["context.1", *time_modules]


def test_transfer_refuses_another_text_space(base, target):
    _, text, inputs = target
    with pytest.raises(ConfigError, match=r"cannot transfer items.text_proj.weight.*same text encoder"):
        transfer(base, text[:, :16], inputs, WINDOW, FAST)


def test_lora_trains_only_adapters_and_the_new_context_and_beats_zero_shot(base, target, tuned):
    result, adapted, zero_shot = tuned
    net = result.model.net
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    assert any("context.1.modules_to_save" in n for n in trainable)
    assert any("fusion.out.lora_A" in n for n in trainable) and any("text_proj.lora_B" in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    base_state = base.net.state_dict()
    frozen = {name.replace(".base_layer", ""): p for name, p in net.named_parameters()
              if not p.requires_grad and "original_module" not in name}
    assert len(frozen) == len(result.copied)
    for key, weight in frozen.items():
        assert torch.equal(weight, base_state[key]), key
    assert result.model.report is not None and result.model.report.best_epoch > 0
    assert valid_ndcg(result.model, target[0]) > zero_shot + 0.1


def test_saved_adapter_is_small_and_reloads_to_the_same_scores(base, target, tuned, tmp_path):
    result, adapted, _ = tuned
    split = target[0]
    users, histories = split.test.users, split.test.histories
    expected = result.model.score(users, histories)
    size = save_adapter(adapted, tmp_path / "adapter", {"base_run": "somewhere"})
    base_mb = sum(t.numel() * t.element_size() for t in base.net.state_dict().values()) / 2 ** 20
    assert 0 < size < base_mb / 2
    assert {"adapter_config.json", "adapter_model.safetensors", "transfer.json"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()}
    unmerged = apply_adapter(transferred(base, target), tmp_path / "adapter")
    assert torch.equal(unmerged.score(users, histories), expected)
    merged = apply_adapter(transferred(base, target), tmp_path / "adapter", merge=True)
    assert not any("lora" in name for name in merged.net.state_dict())
    assert torch.allclose(merged.score(users, histories), expected, atol=1e-4, rtol=1e-5)


def test_a_fraction_samples_training_users_and_keeps_evaluation_cases(target):
    split = target[0]
    sampled = sample_users(split, 0.25, seed=7)
    kept = [u for u, items in enumerate(sampled.train) if len(items)]
    assert len(kept) == 10 and all(np.array_equal(sampled.train[u], split.train[u]) for u in kept)
    assert sampled.valid is split.valid and sampled.test is split.test
    assert [len(s) for s in sample_users(split, 0.25, seed=7).train] == [len(s) for s in sampled.train]
    assert sample_users(split, 1.0, seed=7) is split
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\]"):
            check_fraction(bad)


def write_target_run(root) -> str:
    """A second generic domain (24 items with other texts and ids) and its config; returns the config path."""
    dataset = cyclic_dataset(num_users=30, num_items=24, length=10, seed=5)
    events = dataset.interactions.events[["user_id", "item_id", "timestamp"]]
    events.assign(item_id="p" + events["item_id"].str[1:]).to_csv(root / "events.csv", index=False)
    items = dataset.catalog.items
    items.assign(item_id="p" + items["item_id"].str[1:],
                 text="product " + items["item_id"].str[1:] + " for the shop").to_csv(root / "items.csv", index=False)
    config = generic_config(root, interest={"epochs": 3, "batch_size": 16, "num_negatives": 8, "threads": 1},
                            online={"explain_with_llm": False, "retrieval": "exact"})
    (root / "target.yaml").write_text(yaml.safe_dump(config))
    return str(root / "target.yaml")


def test_finetune_command_saves_an_adapter_that_the_facade_serves(tmp_path_factory, monkeypatch):
    base_run = tiny_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("target")
    config = write_target_run(root)
    result = CliRunner().invoke(app, ["finetune", "--base", str(base_run), "--config", config, "--name", "shop"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = result.stdout.splitlines()  # stderr carries progress bars when the encoder has work to do
    assert lines[0].split()[:5] == ["model", "|", "NDCG@10", "|", "HR@10"]
    assert [line.split()[0] for line in lines[1:3]] == ["zero-shot", "fine-tuned"]
    assert "MB, trained in" in result.stdout and "100% of the training users" in result.stdout
    folder = root / "run" / "adapters" / "shop"
    meta = json.loads((folder / "transfer.json").read_text())
    assert meta["base_run"] == str(base_run.resolve()) and meta["target_config"]["run_dir"] == str(root / "run")
    assert not (folder / "checkpoints").exists()

    recommender = Recommender.load(root / "run", adapter="shop")
    try:
        assert recommender.reranker is None and recommender.model.config.hidden_size == 16  # the base's
        assert recommender.bundle.path == folder / "bundle"  # the adapter's own bundle, its LoRA merged
        assert not any("lora" in name for name in recommender.model.net.state_dict())
        adapted = load_adapter(Experiment(load_config(config, [f"run_dir={root / 'run'}"])), "shop")
        users, histories = recommender.split.test.users, recommender.split.test.histories
        assert torch.allclose(recommender.model.score(users, histories), adapted.score(users, histories),
                              atol=1e-4, rtol=1e-5)
        items = recommender.recommend("u1", k=5)
        assert len(items) == 5 and all(item.item_id.startswith("p") for item in items)
        assert items[0].text.startswith("product ")
    finally:
        recommender.close()
    with pytest.raises(ConfigError, match="no adapter 'nothing'"):
        Recommender.load(root / "run", adapter="nothing")

    served: dict[str, object] = {}

    def answer_one_request(application, **_: object) -> None:  # in place of uvicorn.run: the app it was given
        with TestClient(application) as client:
            served["response"] = client.post("/recommend", json={"user_id": "u1", "k": 3}).json()

    monkeypatch.setattr(uvicorn, "run", answer_one_request)
    result = CliRunner().invoke(app, ["serve", "--run-dir", str(root / "run"), "--adapter", "shop"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "with adapter shop" in result.stdout
    assert [item["item_id"] for item in served["response"]["items"]] == [item.item_id for item in items[:3]]


def test_finetune_help_and_one_line_errors(tmp_path, monkeypatch, capsys):
    help_text = CliRunner().invoke(app, ["finetune", "--help"]).output
    for option in ("--base", "--config", "--set", "--name", "--fraction", "--zero-shot"):
        assert option in help_text
    for args, message in [(["--fraction", "1.5"], "error: fraction must be in (0, 1]"),
                          ([], f"error: no trained interest model in {tmp_path.resolve()}")]:
        monkeypatch.setattr(sys, "argv", ["llmrec", "finetune", "--base", str(tmp_path), *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message), err
