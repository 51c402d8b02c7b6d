"""Item-kNN and user-kNN: hand-computed similarities and scores, neighbour pruning, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.config import KNNConfig
from llmrec.data.schema import Catalog, Dataset, Interactions
from llmrec.data.split import make_split
from llmrec.models.item_knn import ItemKNN
from llmrec.models.registry import load_model
from llmrec.models.user_knn import UserKNN


@pytest.fixture(scope="module")
def split():
    """Training histories (item indices 1..4): u0 {1,2}, u1 {1,2,3}, u2 {3,4}; each user also has a validation
    and a test item (4) that leave-one-out moves out of training."""
    train = {"u0": ["a", "b"], "u1": ["a", "b", "c"], "u2": ["c", "d"]}
    rows = [(u, item, t) for u, items in train.items() for t, item in enumerate(items + ["d", "d"])]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": list("abcd"), "text": list("abcd")})
    return make_split(Dataset("toy", Catalog(items), Interactions(events)))


def test_item_knn_scores_are_shrunk_cosine_sums(split):
    model = ItemKNN(KNNConfig(neighbors=10, shrink=1.0)).fit(split)
    # co(a,b) = 2 (u0, u1), n_a = n_b = 2 -> sim = 2 / (2 + 1); co(a,c) = 1 (u1), n_c = 2 -> 1 / 3
    similarity = model.similarity.to_dense()
    assert similarity[1, 2].item() == pytest.approx(2 / 3)
    assert similarity[1, 3].item() == pytest.approx(1 / 3)
    assert similarity[1, 1].item() == 0 and similarity[0].abs().sum() == 0
    scores = model.score(np.array([0]), [np.array([1])])  # history {a}
    assert scores[0, 2].item() == pytest.approx(2 / 3) and scores[0, 3].item() == pytest.approx(1 / 3)


def test_item_knn_keeps_only_the_top_neighbours(split):
    model = ItemKNN(KNNConfig(neighbors=1, shrink=1.0)).fit(split)
    similarity = model.similarity.to_dense()
    assert ((similarity > 0).sum(dim=1) <= 1).all()
    assert similarity[1, 2] > 0 and similarity[1, 3] == 0  # a keeps b, its closest item


def test_user_knn_weights_neighbours_and_skips_the_user_themself(split):
    model = UserKNN(KNNConfig(neighbors=10, shrink=0.0)).fit(split)
    # query = u0's history {a, b}; u1 {a,b,c}: overlap 2 / sqrt(2*3); u2 {c,d}: overlap 0; u0 itself excluded
    scores = model.score(np.array([0]), [np.array([1, 2])])
    expected = 2 / np.sqrt(6)
    assert scores[0, 3].item() == pytest.approx(expected)  # c: chosen by u1
    assert scores[0, 1].item() == pytest.approx(expected)  # a: by u1 only, not by u0 itself
    assert scores[0, 4].item() == 0  # d: only u2, who shares nothing
    unknown = model.score(np.array([-1]), [np.array([1, 2])])  # an unseen user: every training user counts
    assert unknown[0, 1].item() == pytest.approx(expected + 2 / 2)


@pytest.mark.parametrize("model_class", [ItemKNN, UserKNN])
def test_saved_knn_models_score_identically(tmp_path, split, model_class):
    model = model_class(KNNConfig(neighbors=2)).fit(split)
    model.save(tmp_path / model_class.name)
    loaded = load_model(tmp_path / model_class.name)
    users, histories = split.test.users, split.test.histories
    assert torch.allclose(model.score(users, histories), loaded.score(users, histories))


def test_unfitted_knn_models_say_so():
    from llmrec.errors import ModelNotTrainedError

    for model in (ItemKNN(), UserKNN()):
        with pytest.raises(ModelNotTrainedError):
            model.score(np.array([0]), [np.array([1])])
