"""Baselines and SASRec on a dataset with an exact sequential pattern."""

import numpy as np
import pytest
import torch

from llmrec.config import SASRecConfig
from llmrec.data.split import make_split
from llmrec.errors import ModelNotTrainedError
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.models.popularity import Popularity
from llmrec.models.registry import load_model
from llmrec.models.sasrec import SASRec
from llmrec.models.text_knn import TextKNN
from synthetic import cyclic_dataset

TINY = SASRecConfig(hidden_size=32, num_blocks=1, max_len=10, dropout=0.0, lr=5e-3, batch_size=16,
                    epochs=30, patience=30, eval_every=5)


@pytest.fixture(scope="module")
def split():
    return make_split(cyclic_dataset(num_users=80, num_items=20))


@pytest.fixture(scope="module")
def sasrec(split):
    return SASRec(split.num_items, TINY, seed=1).fit(split)


def test_sasrec_learns_the_sequence_popularity_cannot(split, sasrec):
    evaluator = FullRankingEvaluator(split)
    learned = evaluator.evaluate(sasrec)
    popular = evaluator.evaluate(Popularity().fit(split))
    assert learned["NDCG@5"] > 0.9
    assert popular["NDCG@5"] < 0.5
    assert sasrec.report.best_epoch > 0 and len(sasrec.report.history) == 30


def test_saved_model_scores_identically(tmp_path, split, sasrec):
    histories = split.test.histories[:5]
    users = split.test.users[:5]
    for model in (sasrec, Popularity().fit(split), TextKNN(np.eye(split.num_items + 1, 8))):
        loaded = load_model(model.save(tmp_path / model.name))
        assert type(loaded) is type(model)
        assert torch.allclose(loaded.score(users, histories), model.score(users, histories))


def test_unfitted_model_raises_clear_error(split):
    with pytest.raises(ModelNotTrainedError):
        SASRec(split.num_items, TINY).score(np.array([0]), [np.array([1, 2])])
    with pytest.raises(ModelNotTrainedError):
        Popularity().score(np.array([0]), [np.array([1])])


def test_resumed_training_equals_uninterrupted(tmp_path, split):
    config = SASRecConfig(**{**TINY.__dict__, "epochs": 4, "eval_every": 1})
    straight = SASRec(split.num_items, config, seed=7, checkpoint_dir=tmp_path / "a").fit(split)
    SASRec(split.num_items, SASRecConfig(**{**config.__dict__, "epochs": 2}), seed=7,
           checkpoint_dir=tmp_path / "b").fit(split)  # "killed" after epoch 2
    resumed = SASRec(split.num_items, config, seed=7, checkpoint_dir=tmp_path / "b").fit(split)
    assert [r.epoch for r in resumed.report.history] == [1, 2, 3, 4]
    for a, b in zip(straight.encoder.state_dict().values(), resumed.encoder.state_dict().values()):
        assert torch.equal(a, b)


def test_sampled_softmax_trains(split):
    config = SASRecConfig(**{**TINY.__dict__, "loss": "sampled-softmax", "num_negatives": 8})
    model = SASRec(split.num_items, config, seed=1).fit(split)
    assert FullRankingEvaluator(split).evaluate(model)["NDCG@10"] > 0.5


def test_text_knn_prefers_items_similar_to_history(split):
    vectors = np.zeros((split.num_items + 1, 2), dtype=np.float32)
    vectors[1:11, 0] = 1.0  # items 1-10 form one topic, 11-20 another
    vectors[11:, 1] = 1.0
    scores = TextKNN(vectors).score(np.array([0]), [np.array([1, 2, 3])])[0]
    assert scores[4] > scores[15]
