"""Every trainable model, the reranker and the encoder train and serve on the configured device, and a model
moved to another device ranks the same. Parametrised over the devices this machine has: `cuda` cases are
skipped without a GPU (bench/gpu_check.sh runs them on one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.config import EncoderConfig, RerankConfig, load_config
from llmrec.data.split import Split, make_split
from llmrec.device import resolve_device
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.errors import ConfigError
from llmrec.models.base import Model
from llmrec.models.interest import InterestModel
from llmrec.models.user_features import UserFeatures
from llmrec.models.lightgcn import LightGCN
from llmrec.models.registry import MODELS, load_model, model_class
from llmrec.models.sasrec import SASRec
from llmrec.ranking import rank
from llmrec.rerank.reranker import Reranker, RerankScorer
from llmrec.train.distributed import process_group_backend
from synthetic import cyclic_dataset

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="torch sees no CUDA GPU"))]
TRAIN = {"epochs": 2, "batch_size": 16, "threads": 1}


@dataclasses.dataclass
class TinyRun:
    """A BuildContext over the cyclic dataset with random text vectors and user inputs."""

    split: Split
    item_vectors: np.ndarray
    inputs: UserFeatures
    root: Path

    def user_features(self) -> UserFeatures:
        return self.inputs

    def checkpoint_dir(self, name: str) -> Path:
        return self.root / name / "checkpoints"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> TinyRun:
    split = make_split(cyclic_dataset(num_users=40, num_items=30))
    rng = np.random.default_rng(0)
    text = rng.normal(size=(split.num_items + 1, 16)).astype(np.float32)
    text[0] = 0
    inputs = UserFeatures(rng.normal(size=(split.num_users, 16)).astype(np.float32),
                        np.ones(split.num_users, dtype=bool), rng.integers(1, 3, size=(split.num_users, 1)), [2])
    return TinyRun(split, text, inputs, tmp_path_factory.mktemp("devices"))


def build(name: str, device: str, run: TinyRun) -> Model:
    config = load_config(overrides=[f"{section}.{key}={value}" for section in ("sasrec", "lightgcn", "interest")
                                    for key, value in {**TRAIN, "device": device, "hidden_size": 16}.items()]
                         + ["interest.num_negatives=8", "lightgcn.num_negatives=8", "profile.recent_items=3"])
    return model_class(name).from_config(config, run)


def assert_same_ranking(a, b, run: TinyRun, k: int = 10) -> None:
    cases = run.split.test
    first = rank(a, cases.users, cases.histories, k)
    second = rank(b, cases.users, cases.histories, k)
    assert torch.allclose(first.scores, second.scores, atol=1e-4, rtol=1e-4)
    assert (first.items == second.items).float().mean() > 0.99  # only near-ties may swap


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [SASRec.name, LightGCN.name, InterestModel.name])
def test_models_train_and_score_on_their_device_and_rank_the_same_elsewhere(run, tmp_path, name, device):
    model = build(name, device, run).fit(run.split)
    assert model.device.type == device
    scores = model.score(run.split.test.users[:3], run.split.test.histories[:3])
    assert scores.device.type == device
    loaded = load_model(model.save(tmp_path / name))  # on the CPU
    assert_same_ranking(model, loaded, run)
    moved = loaded.use_settings(load_config(overrides=[f"{section}.device={device}"
                                                       for section in ("sasrec", "lightgcn", "interest")]))
    assert moved.device.type == device
    assert_same_ranking(model, moved, run)


@pytest.mark.parametrize("device", DEVICES)
def test_the_reranker_trains_and_reranks_on_its_device_like_on_the_cpu(run, tmp_path, device):
    model = build(InterestModel.name, "cpu", run).fit(run.split)
    popularity = run.split.train_popularity()
    reranker = Reranker(model, run.item_vectors, popularity, RerankConfig(candidates=10, device=device, **TRAIN))
    reranker.fit(run.split)
    assert next(reranker.net.parameters()).device.type == device
    on_cpu = Reranker.load(reranker.save(tmp_path / "rerank"), model, run.item_vectors, popularity, "cpu")
    assert_same_ranking(RerankScorer(reranker), RerankScorer(on_cpu), run)


@pytest.mark.parametrize("device", DEVICES)
def test_the_encoder_encodes_on_its_device_like_on_the_cpu(device):
    texts = ["a quiet film about the sea", "loud action in space", "a cookbook"]
    here = ItemEncoder(EncoderConfig(device=device, cache_dir=None)).encode(texts, "test/v1")
    cpu = ItemEncoder(EncoderConfig(device="cpu", cache_dir=None)).encode(texts, "test/v1")
    assert np.allclose(here, cpu, atol=1e-4)


def test_device_settings_are_checked():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="sasrec.device must be auto, cpu, cuda or cuda:N"):
        load_config(overrides=["sasrec.device=tpu"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="interest.device='cuda' but torch sees no CUDA GPU"):
            resolve_device("cuda", "interest.device")


def test_data_parallel_training_uses_gloo_for_tensors_on_the_cpu():
    assert process_group_backend(cuda=False) == "gloo"
    assert "cpu:gloo" in process_group_backend(cuda=True).split(",")


def test_every_registered_model_builds_itself_from_its_config_section(run):
    config = load_config(overrides=["sasrec.hidden_size=8", "lightgcn.num_layers=1", "knn.neighbors=7",
                                    "interest.hidden_size=8", "profile.recent_items=3"])
    for name, cls in MODELS.items():
        model = cls.from_config(config, run)
        assert isinstance(model, cls) and model.name == name
    assert model_class("sasrec").from_config(config, run).config.hidden_size == 8
    assert model_class("lightgcn").from_config(config, run).config.num_layers == 1
    assert model_class("itemknn").from_config(config, run).config.neighbors == 7
    assert model_class("llmrec").from_config(config, run).window == 3
    with pytest.raises(ConfigError, match="unknown model 'bert'; available: popularity, text-knn"):
        model_class("bert")
