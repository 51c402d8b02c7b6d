"""Time inputs of the interest model: gap buckets, hour and weekday, the timestamp lookup, and a model that needs
them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from llmrec.config import EvalConfig, InterestConfig
from llmrec.data.split import hold_out_items, make_split
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.models.interest import InterestModel, training_examples
from llmrec.models.registry import load_model
from llmrec.models.time_features import FIRST_ITEM, UNKNOWN, TimeLookup, time_features
from llmrec.models.user_features import UserFeatures
from synthetic import gap_dataset

MONDAY = 4 * 86400  # 1970-01-05
CONFIG = InterestConfig(hidden_size=32, lr=0.005, epochs=100, eval_every=5, patience=10, num_negatives=16,
                        batch_size=32, threads=1, use_profile=False)


def test_features_of_a_history():
    times = np.array([MONDAY + 3600 * 9, MONDAY + 3600 * 9 + 30, UNKNOWN, MONDAY + 86400 * 8 + 3600 * 23])
    features = time_features(times)
    assert features[:, 0].tolist() == [FIRST_ITEM, FIRST_ITEM + 1, 0, 0]  # a 30 s gap is the smallest bucket
    assert features[:, 1].tolist() == [10, 10, 0, 24]  # hour + 1
    assert features[:, 2].tolist() == [1, 1, 0, 2]  # Monday, Monday, unknown, Tuesday a week later
    assert time_features(np.array([0, 3 * 86400, 400 * 86400]))[:, 0].tolist() == [FIRST_ITEM, FIRST_ITEM + 7,
                                                                                     FIRST_ITEM + 11]
    assert time_features(np.array([], dtype=np.int64)).shape == (0, 3)


def test_lookup_finds_prefixes_subsequences_and_nothing_else():
    lookup = TimeLookup([np.array([5, 6, 7, 8])], [np.array([10, 20, 30, 40])])
    assert lookup.history_times(0, np.array([5, 6])).tolist() == [10, 20]
    assert lookup.history_times(0, np.array([5, 7, 8])).tolist() == [10, 30, 40]  # an item held out
    assert lookup.history_times(0, np.array([5, 6, 7, 8, 9])).tolist() == [10, 20, 30, 40, UNKNOWN]  # a new event
    assert lookup.history_times(-1, np.array([5])).tolist() == [UNKNOWN]
    again = TimeLookup.from_tensors(lookup.to_tensors())
    assert again.history_times(0, np.array([6, 8])).tolist() == [20, 40]
    lookup.append(0, 9, 50.7)  # events logged while serving
    lookup.append(2, 3, 60)  # a user who arrived after training
    assert lookup.history_times(0, np.array([5, 6, 7, 8, 9])).tolist() == [10, 20, 30, 40, 50]
    assert lookup.history_times(2, np.array([3])).tolist() == [60]


def test_held_out_histories_keep_their_timestamps():
    split = hold_out_items(make_split(gap_dataset()), 0.1, seed=0)
    lookup = TimeLookup(split.sequences, split.timestamps)
    for user, history in zip(split.test.users, split.test.histories):
        times = lookup.history_times(int(user), history)
        assert (times != UNKNOWN).all() and (np.diff(times) > 0).all()


def test_training_windows_carry_the_time_features_of_their_inputs():
    train = [np.array([1, 2, 3, 4, 5])]
    stamps = [np.array([0, 30, 100_000, 100_030, 100_060])]
    examples = training_examples(train, window=2, max_len=2, earlier_windows=1, timestamps=stamps)
    expected = time_features(stamps[0])
    for inputs, times in zip(examples["inputs"], examples["times"]):
        for item, row in zip(inputs.tolist(), times.tolist()):
            assert row == (expected[item - 1].tolist() if item else [0, 0, 0])


@pytest.fixture(scope="module")
def gaps():
    split = make_split(gap_dataset())
    rng = np.random.default_rng(0)
    text = rng.normal(size=(split.num_items + 1, 16)).astype(np.float32)
    text[0] = 0
    inputs = UserFeatures(np.zeros((split.num_users, 16), np.float32), np.zeros(split.num_users, dtype=bool),
                          np.zeros((split.num_users, 0), np.int64), [],
                          times=TimeLookup(split.sequences, split.timestamps))
    return split, text, inputs


def test_the_gaps_decide_what_comes_next(gaps):
    split, text, inputs = gaps
    evaluator = FullRankingEvaluator(split, EvalConfig(ks=[1]))
    with_time = InterestModel(text, inputs, 4, dataclasses.replace(CONFIG, time_features=True), seed=1).fit(split)
    without = InterestModel(text, inputs, 4, CONFIG, seed=1).fit(split)
    assert evaluator.evaluate(with_time)["HR@1"] > 0.9
    assert evaluator.evaluate(without)["HR@1"] < 0.8  # after the first step, a coin flip


def test_save_and_load_keep_the_timestamps(tmp_path, gaps):
    split, text, inputs = gaps
    config = dataclasses.replace(CONFIG, time_features=True, epochs=1)
    model = InterestModel(text, inputs, 4, config, seed=1).fit(split)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    users, histories = split.test.users[:8], split.test.histories[:8]
    assert torch.equal(model.score(users, histories), loaded.score(users, histories))
