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


def test_lightgcn_learns_who_likes_what(tmp_path):
    """Two taste groups with disjoint items, the popular items in the other group: graph embeddings must
    recommend within the group, where popularity cannot."""
    from llmrec.config import LightGCNConfig
    from llmrec.eval.evaluator import FullRankingEvaluator
    from llmrec.models.lightgcn import LightGCN
    from llmrec.models.popularity import Popularity

    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        group = u % 3 == 0  # a minority group: its items are less popular overall
        pool = [f"g{i}" for i in range(10)] if group else [f"h{i}" for i in range(10)]
        for t, item in enumerate(rng.choice(pool, size=6, replace=False)):
            rows.append((f"u{u}", item, t))
    items = pd.DataFrame({"item_id": [f"g{i}" for i in range(10)] + [f"h{i}" for i in range(10)], "text": "x"})
    split = make_split(Dataset("groups", Catalog(items), Interactions(pd.DataFrame(
        rows, columns=["user_id", "item_id", "timestamp"]))))
    config = LightGCNConfig(hidden_size=16, num_layers=2, num_negatives=8, batch_size=64, lr=0.02, epochs=30,
                            patience=30, eval_every=10, threads=1)
    model = LightGCN(config, seed=1).fit(split)
    minority = np.flatnonzero([int(split.user_ids[u][1:]) % 3 == 0 for u in split.test.users])
    evaluator = FullRankingEvaluator(split)
    ours = evaluator.evaluate(model, split.test.subset(minority))["HR@5"]
    popular = evaluator.evaluate(Popularity().fit(split), split.test.subset(minority))["HR@5"]
    assert ours > 0.6 and popular == 0.0
    model.save(tmp_path / "lightgcn")
    loaded = load_model(tmp_path / "lightgcn")
    assert torch.allclose(model.score(split.test.users, split.test.histories),
                          loaded.score(split.test.users, split.test.histories))
    unknown = model.score(np.array([-1]), [np.array([1, 2])])  # folded in from its history
    assert unknown.shape == (1, split.num_items + 1) and torch.isfinite(unknown).all()
