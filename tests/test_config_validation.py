"""The configuration as a schema: ranges, choices and cross-field rules, checked the same way for files, `--set`
overrides and Python; one limit for k; plausible timestamps; str or Path wherever a path is taken."""

import dataclasses
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.config import (MAX_K, DataConfig, EvalConfig, InterestConfig, RerankConfig, RunConfig, check_k,
                           load_config, save_config)
from llmrec.data.generic import load_generic, read_table
from llmrec.data.registry import load_dataset
from llmrec.data.schema import Interactions, check_timestamps
from llmrec.data.split import make_split
from llmrec.errors import ConfigError, DataError
from llmrec.llm import GenerationParams
from llmrec.models.popularity import Popularity
from llmrec.models.registry import load_model
from llmrec.online.events import EventStore
from llmrec.service.schemas import EventRequest, RecommendRequest
from synthetic import cyclic_dataset
from test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
FAR_FUTURE = 4_000_000_000  # 2096


def config_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("override, message", [
    ("interest.epochs=-3", "interest.epochs must be >= 1, got -3"),
    ("interest.hidden_size=0", "interest.hidden_size must be >= 1, got 0"),
    ("interest.dropout=7", "interest.dropout must be >= 0 and < 1, got 7.0"),
    ("interest.dropout=1", "interest.dropout must be >= 0 and < 1, got 1.0"),
    ("interest.dropout=NaN", "interest.dropout must be >= 0 and < 1, got nan"),
    ("interest.sum_weight=1.5", "interest.sum_weight must be >= 0 and <= 1, got 1.5"),
    ("interest.threads=0", "interest.threads must be >= 1, got 0"),
    ("interest.earlier_windows=-1", "interest.earlier_windows must be >= 0, got -1"),
    ("sasrec.lr=0", "sasrec.lr must be > 0, got 0.0"),
    ("sasrec.weight_decay=-0.1", "sasrec.weight_decay must be >= 0, got -0.1"),
    ("sasrec.max_len=0", "sasrec.max_len must be >= 1, got 0"),
    ("lightgcn.batch_size=0", "lightgcn.batch_size must be >= 1, got 0"),  # a subclass's own default keeps the rule
    ("rerank.epochs=0", "rerank.epochs must be >= 1, got 0"),
    ("rerank.holdout_fraction=0", "rerank.holdout_fraction must be > 0 and < 1, got 0.0"),
    ("data.cold_item_fraction=1", "data.cold_item_fraction must be >= 0 and < 1, got 1.0"),
    ("data.temporal_test_fraction=0", "data.temporal_test_fraction must be > 0 and < 1, got 0.0"),
    ("data.k_core=-2", "data.k_core must be >= 0, got -2"),
    ("eval.tail_user_fraction=-0.2", "eval.tail_user_fraction must be >= 0 and < 1, got -0.2"),
    ("eval.ks=[0, 10]", "eval.ks entries must be >= 1 and <= 1000, got [0, 10]"),
    ("index.port=70000", "index.port must be >= 1 and <= 65535, got 70000"),
    ("index.max_neighbors=1", "index.max_neighbors must be >= 2, got 1"),
    ("llm.temperature=-1", "llm.temperature must be >= 0, got -1.0"),
    ("llm.timeout_s=0", "llm.timeout_s must be > 0, got 0.0"),
    ("online.profile_refresh_every=-1", "online.profile_refresh_every must be >= 0, got -1"),
    ('online.hybrid_mix={"context": -1}', "online.hybrid_mix values must be >= 0, got {'context': -1}"),
    ("profile.recent_items=0", "profile.recent_items must be >= 1, got 0"),
    ("seed=-1", "seed must be >= 0, got -1"),
])
def test_ranges(override, message):
    assert config_error([override]) == message


@pytest.mark.parametrize("override, message", [
    ("sasrec.loss=bce", "sasrec.loss must be one of softmax, sampled-softmax, got 'bce'"),
    ("interest.profile_source=gpt", "interest.profile_source must be one of llm, template, mean-items, graph, "
                                    "graph+profile, got 'gpt'"),
    ("data.on_bad_timestamps=ignore", "data.on_bad_timestamps must be one of error, drop, got 'ignore'"),
    ("llm.device=tpu", "llm.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("rerank.device=cuda:x", "rerank.device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ('online.hybrid_mix={"novelty": 1}', "online.hybrid_mix keys must be among short-term, long-term, context, "
                                         "got 'novelty'"),
])
def test_choices(override, message):
    assert config_error([override]) == message


@pytest.mark.parametrize("overrides, message", [
    (["sasrec.num_heads=3"], "sasrec.num_heads must divide sasrec.hidden_size (64), got 3"),
    (["interest.hidden_size=30", "interest.num_heads=4"], "interest.num_heads must divide interest.hidden_size (30), got 4"),
    (["interest.max_len=10"], "interest.max_len must be at least profile.recent_items (50) or unset, got 10"),
    (["data.temporal_valid_fraction=0.5", "data.temporal_test_fraction=0.5"],
     "data.temporal_valid_fraction + data.temporal_test_fraction must be < 1, got 0.5 + 0.5"),
    (["eval.ks=[]"], "eval.ks must hold at least one k, got []"),
    (["online.events=postgressql://db.example/llmrec"],
     "online.events: unsupported database URL 'postgressql://db.example/llmrec': use a SQLite file path or a "
     "postgresql:// or postgres:// URL"),
    (["profile.store=mysql://user:secret@db.example/llmrec"],
     "profile.store: unsupported database URL 'mysql://user:***@db.example/llmrec': use a SQLite file path or a "
     "postgresql:// or postgres:// URL"),
])
def test_cross_field_rules(overrides, message):
    assert config_error(overrides) == message


def test_cross_field_rules_apply_only_where_they_matter():
    config = load_config(None, ["interest.short_term=gru", "interest.hidden_size=30", "interest.num_heads=4",
                                "interest.max_len=50", "profile.recent_items=50"])
    assert config.interest.num_heads == 4 and config.interest.max_len == 50


def test_files_overrides_and_python_get_the_same_check(tmp_path):
    message = "interest.dropout must be >= 0 and < 1, got 7.0"
    toml = tmp_path / "run.toml"
    toml.write_text("[interest]\ndropout = 7\n")
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("interest:\n  dropout: 7\n")
    for build in (lambda: load_config(toml), lambda: load_config(yaml_file), lambda: load_config(None, ["interest.dropout=7"]),
                  lambda: InterestConfig(dropout=7), lambda: RunConfig(interest={"dropout": 7}),
                  lambda: dataclasses.replace(InterestConfig(), dropout=7)):
        with pytest.raises(ConfigError, match=re.escape(message)):
            build()
    with pytest.raises(ConfigError, match=re.escape("interest.max_len must be at least profile.recent_items")):
        RunConfig(interest=InterestConfig(max_len=5))
    with pytest.raises(ConfigError, match="rerank.epochs must be int, got '3'"):
        RerankConfig(epochs="3")
    with pytest.raises(ConfigError, match=re.escape("unknown option(s) interest.bogus; known: ")):
        InterestConfig(bogus=1)


def test_defaults_and_shipped_configs_are_valid(tmp_path):
    config = RunConfig()
    save_config(config, str(tmp_path / "config.yaml"))  # a str path, too
    assert load_config(str(tmp_path / "config.yaml")) == config
    for path in [*(ROOT / "bench" / "configs").glob("*.yaml"), ROOT / "scripts" / "demo.yaml"]:
        load_config(path)
    assert EvalConfig(ks=(1, 10)).ks == [1, 10]  # a tuple from Python is fine


def test_generation_params_are_checked_too():
    with pytest.raises(ConfigError, match=re.escape("GenerationParams.top_p must be > 0 and <= 1, got 1.5")):
        GenerationParams(top_p=1.5)
    with pytest.raises(ConfigError, match=re.escape("GenerationParams.temperature must be >= 0, got -0.5")):
        GenerationParams(temperature=-0.5)
    assert dataclasses.replace(GenerationParams(stop=["\n"]), seed=3).stop == ("\n",)


def test_one_k_limit_for_python_cli_and_http():
    assert check_k(1) == 1 and check_k(MAX_K) == MAX_K
    for bad in (0, MAX_K + 1, True, 2.0, "5"):
        with pytest.raises(DataError, match=f"k must be an integer from 1 to {MAX_K}"):
            check_k(bad)
    assert RecommendRequest(user_id="u", k=MAX_K).k == MAX_K
    for bad, message in ((MAX_K + 1, f"less than or equal to {MAX_K}"), (True, "valid integer"),
                         ("5", "valid integer")):
        with pytest.raises(ValidationError, match=message):
            RecommendRequest(user_id="u", k=bad)
    too_many = CliRunner().invoke(app, ["recommend", "--user", "u1", "--k", str(MAX_K + 1)])
    assert too_many.exit_code == 2 and str(MAX_K) in too_many.output
    with pytest.raises(ConfigError, match=re.escape(f"eval.ks entries must be >= 1 and <= {MAX_K}")):
        EvalConfig(ks=[10, MAX_K + 1])


def generic_files(folder: Path, timestamps: list[int]) -> dict:
    pd.DataFrame({"user_id": "u", "item_id": [f"i{n}" for n in range(len(timestamps))],
                  "timestamp": timestamps}).to_csv(folder / "events.csv", index=False)
    pd.DataFrame({"item_id": [f"i{n}" for n in range(len(timestamps))], "title": "a film"}).to_csv(
        folder / "items.csv", index=False)
    return {"interactions": "events.csv", "items": "items.csv"}


def test_implausible_timestamps_are_rejected_with_the_row_or_dropped(tmp_path):
    options = generic_files(tmp_path, [1_600_000_000, -5, FAR_FUTURE, 1_600_000_100])
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(name="generic", path=str(tmp_path), generic=options))
    message = str(caught.value)
    assert message.startswith("events.csv: 2 timestamp(s) not between 1970-01-01 (0) and a day ahead of now")
    assert f"user 'u' item 'i1' at -5; user 'u' item 'i2' at {FAR_FUTURE}." in message
    assert "data.on_bad_timestamps=drop" in message and "\n" not in message
    dataset = load_dataset(DataConfig(name="generic", path=str(tmp_path), generic=options,
                                      on_bad_timestamps="drop"))
    assert dataset.interactions.events["item_id"].tolist() == ["i0", "i3"]
    assert dataset.notes["bad_timestamp_rows_dropped"] == 2
    within_a_day = Interactions(pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [time.time() + 3600]}))
    assert check_timestamps(within_a_day) == (within_a_day, 0)


def test_implausible_event_timestamps_are_rejected(tmp_path):
    store = EventStore(str(tmp_path / "events.sqlite"))
    for bad in (-1, time.time() + 2 * 86400):
        with pytest.raises(DataError, match="timestamp must be unix seconds between 1970-01-01"):
            store.append("u", "i", timestamp=bad)
    assert store.count() == 0
    assert store.append("u", "i", timestamp=0).timestamp == 0
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        EventRequest(user_id="u", item_id="i", timestamp=-1)


def test_paths_may_be_str_or_path(tmp_path):
    split = make_split(cyclic_dataset(num_users=5, num_items=6, length=4))
    model = Popularity().fit(split)
    model.save(str(tmp_path / "popularity"))
    loaded = load_model(str(tmp_path / "popularity"))
    users, histories = np.arange(2), split.train[:2]
    assert np.array_equal(loaded.score(users, histories).numpy(), model.score(users, histories).numpy())
    options = generic_files(tmp_path, [1, 2])
    assert len(read_table(options["items"], str(tmp_path))) == 2
    assert len(load_generic(options, str(tmp_path)).interactions) == 2


def test_cli_exits_2_with_one_line_for_an_out_of_range_value(tmp_path):
    result = run_cli("train", "--set", "interest.epochs=-3", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: interest.epochs must be >= 1, got -3"]
    assert not (tmp_path / "runs").exists()
