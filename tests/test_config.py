"""Configuration: files, overrides and clear errors."""

import pytest

from llmrec.config import RunConfig, load_config, save_config
from llmrec.errors import ConfigError


def test_defaults_file_and_overrides_merge_in_order(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('run_dir = "runs/x"\n[sasrec]\nepochs = 7\nlr = 0.01\n[data]\nname = "movielens-1m"\n')
    config = load_config(path, ["sasrec.epochs=3", "eval.ks=[1, 10]", "index.host=localhost"])
    assert config.run_dir == "runs/x"
    assert config.data.name == "movielens-1m"
    assert config.sasrec.epochs == 3 and config.sasrec.lr == 0.01
    assert config.eval.ks == [1, 10]
    assert config.index.host == "localhost"
    assert config.sasrec.hidden_size == RunConfig().sasrec.hidden_size


def test_yaml_round_trip(tmp_path):
    config = load_config(None, ["sasrec.loss=sampled-softmax", "data.generic={\"items\": \"i.csv\"}"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize("overrides, message", [
    (["sasrec.epoch=3"], "unknown option(s) sasrec.epoch"),
    (["sasrec.epochs=three"], "sasrec.epochs must be int"),
    (["sasrec.loss=bce"], "sasrec.loss must be one of softmax, sampled-softmax"),
    (["nonsense"], "must look like section.key=value"),
    (["eval.ks=5"], "eval.ks must be a list"),
])
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[sasrec\nepochs = 1")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(broken)
    wrong = tmp_path / "c.json"
    wrong.write_text("{}")
    with pytest.raises(ConfigError, match="must end in"):
        load_config(wrong)
