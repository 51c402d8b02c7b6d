"""The interest model's frozen-content score (`interest.content_weight`): text-kNN's user vector at every
position, a learned weight, cold items ranked on their text, and one dot product for training and retrieval."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from llmrec.config import InterestConfig
from llmrec.data.schema import Catalog
from llmrec.data.split import make_split
from llmrec.models.base import pad_histories
from llmrec.models.content_score import ContentScore
from llmrec.models.interest import InterestModel
from llmrec.models.text_knn import TextKNN
from llmrec.models.user_features import UserFeatures
from synthetic import topic_dataset, topic_text_vectors

WINDOW = 4
INITIAL_WEIGHT = 1.0
CONTENT = InterestConfig(hidden_size=16, epochs=10, eval_every=10, patience=1, num_negatives=16, batch_size=16,
                         lr=0.01, threads=1, content_weight=INITIAL_WEIGHT)
COLD = "t0-new"
"""A catalog item of topic 0 that nobody interacted with."""


@pytest.fixture(scope="module")
def topics():
    """The topic dataset plus the cold item, the items' topic text vectors and plain user features."""
    dataset = topic_dataset()
    items = pd.concat([dataset.catalog.items, pd.DataFrame({"item_id": [COLD], "text": ["new"]})])
    split = make_split(dataclasses.replace(dataset, catalog=Catalog(items)))
    text = topic_text_vectors(split.item_ids)
    features = UserFeatures(np.zeros((split.num_users, 8), dtype=np.float32), np.zeros(split.num_users, dtype=bool),
                            np.zeros((split.num_users, 0), dtype=np.int64), [])
    return split, text, features


@pytest.fixture(scope="module")
def trained(topics):
    split, text, features = topics
    return InterestModel(text, features, WINDOW, CONTENT, seed=1).fit(split)


def test_the_users_content_vector_is_text_knns_user_vector_at_every_position(topics):
    _, text, _ = topics
    vectors = torch.from_numpy(text)
    histories = [np.array([3, 1, 7]), np.array([5])]
    users = ContentScore.user_vectors(vectors, pad_histories(histories, 5))
    knn = TextKNN(vectors)
    for row, history in enumerate(histories):
        start = 5 - len(history)
        assert users[row, :start].abs().sum() == 0  # no item yet
        for end in range(1, len(history) + 1):
            expected = F.normalize(knn.user_vectors([history[:end]]), dim=-1)[0]
            assert torch.allclose(users[row, start + end - 1], expected, atol=1e-6)


def test_the_content_weight_grows_under_training_where_content_predicts_the_target(trained):
    # the next item's topic is the recent items' topic, which the frozen text carries from the first step, while
    # 40 items per topic leave each ID embedding a handful of interactions to learn from
    assert float(trained.net.content.weight.detach()) > 1.2 * INITIAL_WEIGHT


def test_a_cold_item_with_the_historys_text_outranks_the_unrelated_warm_items(topics, trained):
    split, _, _ = topics
    cold = split.item_index(COLD)
    assert not trained.seen[cold]
    unrelated = [split.item_index(i) for i in split.item_ids if not i.startswith("t0-")]
    users = np.array([u for u in range(split.num_users) if split.item_id(int(split.train[u][0])).startswith("t0-")])
    assert len(users) == 20  # topic 0's
    scores = trained.score(users, [split.train[u] for u in users])
    assert bool((scores[:, cold] > scores[:, unrelated].max(1).values).all())


def test_retrieval_scores_are_the_interest_score_plus_w_times_the_text_similarity(topics, trained):
    split, text, _ = topics
    users, histories = np.array([0, 1]), [split.train[0], split.train[1]]
    interest, _ = trained.interest(users, histories)
    vectors = torch.from_numpy(text)
    recent = [history[-trained.max_len:] for history in histories]  # what the encoder reads
    new = torch.from_numpy(~trained.seen)
    new[0] = False  # padding
    with torch.no_grad():
        learned = interest @ trained.net.items.table().T
        similarity = F.normalize(TextKNN(vectors).user_vectors(recent), dim=-1) @ vectors.T
        expected = learned + trained.net.content.weight * similarity + trained.new_item_offset * new
    assert torch.allclose(trained.score(users, histories), expected, atol=1e-4)


def test_the_learned_weight_is_saved_and_loaded_with_the_model(topics, trained):
    split, _, features = topics
    loaded = InterestModel.from_state(*trained.state(), features)
    users, histories = np.array([0, 1]), [split.train[0], split.train[1]]
    assert torch.allclose(loaded.net.content.weight, trained.net.content.weight)
    assert torch.allclose(loaded.score(users, histories), trained.score(users, histories), atol=1e-5)
