"""k-core filtering and the two split protocols on hand-built data where every number can be checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.config import DataConfig, EvalConfig
from llmrec.data.filtering import k_core
from llmrec.data.registry import load_dataset
from llmrec.data.schema import Catalog, Dataset, Interactions
from llmrec.data.split import hold_out_items, make_split
from llmrec.errors import DataError, UnknownIdError
from llmrec.eval.evaluator import FullRankingEvaluator
from synthetic import cyclic_dataset


def _dataset(rows: list[tuple], items: list[str], name: str = "hand") -> Dataset:
    columns = ["user_id", "item_id", "timestamp"][: len(rows[0])]
    events = pd.DataFrame(rows, columns=columns)
    catalog = Catalog(pd.DataFrame({"item_id": items, "text": [f"item {i}" for i in items]}))
    return Dataset(name, catalog, Interactions(events))


def _ids(split, indices) -> list[str]:
    return [split.item_id(int(i)) for i in indices]


# ---------------------------------------------------------------------------------------------------------------
# k-core

# k = 2. One pass removes u3 (1 event) and item d (1 event); that leaves item c with only u4, and u4 with only c,
# so a second pass must remove u4-c too. e never had an interaction.
KCORE_ROWS = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "c"), ("u4", "c"), ("u4", "d")]


def test_k_core_iterates_until_stable():
    dataset = _dataset(KCORE_ROWS, ["a", "b", "c", "d", "e"])
    filtered = k_core(dataset, 2)
    events = filtered.interactions.events
    assert list(zip(events["user_id"], events["item_id"])) == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]
    assert filtered.notes == {"k_core_removed_interactions": 3, "k_core_removed_items": 2}
    # items filtered out leave the catalog; the never-seen item e stays (a cold item)
    assert sorted(filtered.catalog.ids) == ["a", "b", "e"]
    assert events.groupby("user_id").size().min() >= 2 and events.groupby("item_id").size().min() >= 2
    assert dataset.interactions.events.shape[0] == 7  # the input is not modified


def test_k_core_no_op_cases():
    dataset = _dataset(KCORE_ROWS, ["a", "b", "c", "d", "e"])
    assert k_core(dataset, 1) is dataset and k_core(dataset, 0) is dataset
    clean = _dataset([("u1", "a"), ("u2", "a"), ("u1", "b"), ("u2", "b")], ["a", "b"])
    assert k_core(clean, 2) is clean


def test_k_core_through_load_dataset_keeps_generic_cold_items(tmp_path):
    pd.DataFrame(KCORE_ROWS, columns=["user_id", "item_id"]).to_csv(tmp_path / "e.csv", index=False)
    pd.DataFrame({"item_id": list("abcde"), "title": list("ABCDE")}).to_csv(tmp_path / "i.csv", index=False)
    config = DataConfig(name="generic", k_core=2, generic={"interactions": "e.csv", "items": "i.csv"},
                        path=str(tmp_path))
    dataset = load_dataset(config)
    assert sorted(dataset.catalog.ids) == ["a", "b", "e"]
    assert dataset.notes["k_core_removed_interactions"] == 3
    unfiltered = load_dataset(DataConfig(name="generic", generic=config.generic, path=str(tmp_path)))
    assert sorted(unfiltered.catalog.ids) == list("abcde") and len(unfiltered.interactions) == 7


def test_builtin_catalog_drops_items_without_interactions(write_ml100k, tmp_path):
    ratings = [(1, 1, 5, 10), (1, 2, 3, 11), (1, 3, 4, 12), (1, 4, 2, 13),  # item 4: one rating only
               (2, 1, 2, 20), (2, 2, 5, 21), (3, 3, 1, 30), (3, 2, 3, 31), (3, 1, 4, 32)]
    dataset = load_dataset(DataConfig(name="movielens-100k", path=str(write_ml100k(tmp_path, ratings=ratings)),
                                      k_core=2))
    # item 5 never had a rating (left out of a built-in catalog), item 4 falls to the 2-core
    assert sorted(dataset.catalog.ids) == ["1", "2", "3"]
    assert dataset.notes["catalog_items_without_interactions"] == 1
    assert dataset.notes["k_core_removed_items"] == 1 and dataset.notes["k_core_removed_interactions"] == 1


# ---------------------------------------------------------------------------------------------------------------
# Leave-one-out


def test_leave_one_out_by_hand():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4),
            ("u2", "c", 5), ("u2", "a", 6), ("u2", "b", 7),
            ("u3", "d", 1), ("u3", "a", 2)]  # too short to evaluate: training only
    split = make_split(_dataset(rows, ["a", "b", "c", "d", "e"]))
    assert split.protocol == "leave-one-out"
    assert split.num_items == 5 and list(split.item_ids) == ["a", "b", "c", "d", "e"]
    assert split.item_index("a") == 1 and split.item_id(5) == "e"  # index 0 is padding
    assert list(split.user_ids) == ["u1", "u2", "u3"]
    assert [_ids(split, t) for t in split.train] == [["a", "b"], ["c"], ["d", "a"]]
    assert [_ids(split, s) for s in split.sequences] == [["a", "b", "c", "d"], ["c", "a", "b"], ["d", "a"]]
    assert split.test.users.tolist() == [0, 1] and split.valid.users.tolist() == [0, 1]
    assert [_ids(split, t) for t in split.test.targets] == [["d"], ["b"]]
    assert [_ids(split, h) for h in split.test.histories] == [["a", "b", "c"], ["c", "a"]]
    assert [_ids(split, t) for t in split.valid.targets] == [["c"], ["a"]]
    assert [_ids(split, h) for h in split.valid.histories] == [["a", "b"], ["c"]]
    assert [t.tolist() for t in split.train_timestamps] == [[1, 2], [5], [1, 2]]
    assert split.train_popularity().tolist() == [0, 2, 1, 1, 1, 0]
    with pytest.raises(UnknownIdError, match="unknown item id 'zz'"):
        split.item_index("zz")
    with pytest.raises(UnknownIdError, match="unknown user id 'u9'"):
        split.user_index("u9")
    sub = split.test.subset(np.array([1]))
    assert sub.users.tolist() == [1] and _ids(split, sub.targets[0]) == ["b"]


def test_leave_one_out_repeated_items_and_ties():
    """Equal timestamps keep file order; an item may repeat in a history."""
    rows = [("u", "b", 5), ("u", "a", 5), ("u", "b", 6), ("u", "c", 6)]
    split = make_split(_dataset(rows, ["a", "b", "c"]))
    assert _ids(split, split.sequences[0]) == ["b", "a", "b", "c"]
    assert _ids(split, split.test.targets[0]) == ["c"] and _ids(split, split.valid.targets[0]) == ["b"]


# ---------------------------------------------------------------------------------------------------------------
# Temporal

# 9 events at t = 0..8; valid/test fractions 0.25/0.25 put the cut-offs at the 50% and 75% quantiles, exactly on
# events (and exact in floating point): t_valid = 4, t_test = 6. t < 4 is training, 4 <= t < 6 validation
# targets, t >= 6 test targets.
TEMPORAL_ROWS = [("u1", "a", 0), ("u1", "b", 1), ("u1", "c", 2), ("u1", "d", 6),
                 ("u2", "b", 3), ("u2", "c", 4), ("u2", "e", 8),
                 ("u3", "a", 5), ("u3", "b", 7)]


def test_temporal_split_by_hand():
    split = make_split(_dataset(TEMPORAL_ROWS, list("abcde")), "temporal", valid_fraction=0.25,
                       test_fraction=0.25)
    assert split.protocol == "temporal"
    # training: everything before the validation cut-off, for every user
    assert [_ids(split, t) for t in split.train] == [["a", "b", "c"], ["b"], []]
    assert [t.tolist() for t in split.train_timestamps] == [[0, 1, 2], [3], []]
    # validation: users with events in [t_valid, t_test) and a history before t_valid
    # (u1 has no event in that window, u3 has no history before it)
    assert split.user_ids[split.valid.users].tolist() == ["u2"]
    assert [_ids(split, t) for t in split.valid.targets] == [["c"]]  # c at t = 4, the cut-off itself
    assert [_ids(split, h) for h in split.valid.histories] == [["b"]]
    # test: events from t_test on; history = everything before t_test (validation period included)
    assert split.user_ids[split.test.users].tolist() == ["u1", "u2", "u3"]
    assert [_ids(split, t) for t in split.test.targets] == [["d"], ["e"], ["b"]]  # d at t = 6, the cut-off
    assert [_ids(split, h) for h in split.test.histories] == [["a", "b", "c"], ["b", "c"], ["a"]]
    # no target is older than any history event of the same case
    ts = {(u, i): t for u, i, t in TEMPORAL_ROWS}
    for cases in (split.valid, split.test):
        for u, history, target in zip(cases.users, cases.histories, cases.targets):
            user = split.user_ids[u]
            assert max(ts[(user, split.item_id(int(i)))] for i in history) < min(
                ts[(user, split.item_id(int(i)))] for i in target)


def test_temporal_targets_are_sets():
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4), ("u", "c", 20), ("u", "a", 21),
            ("u", "c", 22), ("v", "a", 5), ("v", "b", 6), ("v", "c", 7), ("v", "d", 8)]
    split = make_split(_dataset(rows, list("abcd")), "temporal", valid_fraction=0.1, test_fraction=0.25)
    assert _ids(split, split.test.targets[0]) == ["a", "c"]  # unique items after the cut-off


def test_temporal_split_errors():
    no_time = _dataset([("u", "a"), ("u", "b"), ("u", "c")], list("abc"))
    with pytest.raises(DataError, match="the temporal split needs timestamps"):
        make_split(no_time, "temporal")
    timed = _dataset(TEMPORAL_ROWS, list("abcde"))
    for valid, test in ((0.0, 0.2), (0.2, 0.0), (0.5, 0.5), (-0.1, 0.2)):
        with pytest.raises(DataError, match="fractions must be positive and sum to less than 1"):
            make_split(timed, "temporal", valid_fraction=valid, test_fraction=test)
    # every user's events are all before the test cut-off except one user with no history
    lonely = _dataset([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("v", "d", 100)], list("abcd"))
    with pytest.raises(DataError, match="no user has both history and events after the test cut-off"):
        make_split(lonely, "temporal", valid_fraction=0.2, test_fraction=0.2)


def test_hold_out_items_makes_them_cold_everywhere_but_in_targets():
    split = make_split(cyclic_dataset(num_users=60, num_items=20, length=12))
    held = hold_out_items(split, 0.1, seed=3)
    cold = np.flatnonzero(held.train_popularity()[1:] == 0) + 1
    assert len(cold) == 2  # 10 % of the 20 items seen in training
    for history in [*held.train, *held.valid.histories, *held.test.histories]:
        assert not np.isin(history, cold).any()
    assert [list(t) for t in held.test.targets] == [list(t) for t in split.test.targets]
    assert sum(map(len, held.train)) < sum(map(len, split.train))
    groups = FullRankingEvaluator(held, EvalConfig()).groups(held.test)
    targets = np.array([t[0] for t in held.test.targets])
    assert groups["cold-items"].tolist() == np.isin(targets, cold).tolist() and groups["cold-items"].any()
    with pytest.raises(DataError, match="between 0 and 1"):
        hold_out_items(split, 1.5)
