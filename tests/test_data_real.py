"""The loaders on the real benchmark files give the published statistics, texts and protocol splits.

Each dataset is loaded once per session (conftest); the whole module is skipped when ../shared/datasets is absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.config import DataConfig
from llmrec.data.registry import BUILTIN, load_dataset


def _sequence_ids(dataset, user_id: str) -> list[str]:
    events = dataset.interactions.events
    return events.loc[events["user_id"] == user_id, "item_id"].tolist()


def _assert_leave_one_out(dataset, split) -> None:
    """Test target = last item, validation target = second-to-last, histories exclude their targets."""
    events = dataset.interactions.events
    lengths = events.groupby("user_id").size()
    n_eval = int((lengths >= 3).sum())
    assert len(split.test) == len(split.valid) == n_eval
    assert sum(len(t) for t in split.train) == len(events) - 2 * n_eval
    sequences = events.groupby("user_id", sort=False)["item_id"].agg(list)
    for row, user_row in enumerate(split.test.users):
        user = split.user_ids[user_row]
        items = sequences[user]
        idx = [split.item_index(i) for i in items]
        assert split.test.targets[row].tolist() == [idx[-1]]
        assert split.test.histories[row].tolist() == idx[:-1]
        assert split.valid.targets[row].tolist() == [idx[-2]]
        assert split.valid.histories[row].tolist() == idx[:-2]
        assert split.train[user_row].tolist() == idx[:-2]
        if row >= 200:  # a sample is enough; the sizes above cover every user
            break


# ---------------------------------------------------------------------------------------------------------------
# MovieLens-100K


def test_ml100k_raw_counts(ml100k_raw, ml100k_folder):
    stats = ml100k_raw.stats()
    assert stats["users"] == 943
    assert stats["interactions"] == 100_000
    assert stats["items_in_catalog"] == 1682
    assert stats["items_with_interactions"] == 1682
    assert stats["has_timestamps"] is True
    assert ml100k_raw.users is not None and len(ml100k_raw.users) == 943
    # timestamps are the file's unix seconds, untouched
    raw = pd.read_csv(ml100k_folder / "u.data", sep="\t", names=["u", "i", "r", "t"])
    assert ml100k_raw.interactions.events["timestamp"].sum() == raw["t"].sum()
    assert ml100k_raw.interactions.events["rating"].sum() == raw["r"].sum()


def test_ml100k_default_is_5core(ml100k):
    assert BUILTIN["movielens-100k"].default_k_core == 5
    stats = ml100k.stats()
    # the 5-core numbers the literature reports for ML-100K
    assert (stats["users"], stats["items_in_catalog"], stats["interactions"]) == (943, 1349, 99_287)
    assert stats["history_len_min"] >= 5
    counts = ml100k.interactions.events["item_id"].value_counts()
    assert counts.min() >= 5
    assert ml100k.notes["k_core_removed_interactions"] == 713
    assert ml100k.notes["k_core_removed_items"] == 333


def test_ml100k_item_text_and_latin1_titles(ml100k_raw):
    items = ml100k_raw.catalog.items.set_index("item_id")
    assert items.loc["1", "text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert items.loc["1", "year"] == "1995"
    # u.item is Latin-1: é is byte 0xE9 and must decode to U+00E9, not mojibake
    assert items.loc["543", "title"] == "Misérables, Les (1995)"
    assert items.loc["1104", "title"] == "C'est arrivé près de chez vous (1992)"
    assert not items["text"].str.contains("\ufffd|Ã", regex=True).any()
    # 'unknown' is a genre flag, never rendered as a genre
    assert items.loc["267", "title"] == "unknown"
    assert "unknown" not in sum(items["genres"].tolist(), [])


def test_ml100k_order_is_by_timestamp(ml100k_raw, ml100k_folder):
    events = ml100k_raw.interactions.events
    assert (events.groupby("user_id")["timestamp"].diff().dropna() >= 0).all()
    assert (events.groupby("user_id")["position"].diff().dropna() == 1).all()
    # ties keep file order: compare with a stable sort of the raw file
    raw = pd.read_csv(ml100k_folder / "u.data", sep="\t", names=["u", "i", "r", "t"], dtype=str)
    raw["ts"] = raw["t"].astype(int)
    expected = raw.sort_values(["u", "ts"], kind="stable")
    assert events["item_id"].tolist() == expected["i"].tolist()


def test_ml100k_leave_one_out(ml100k, ml100k_split):
    assert ml100k_split.num_items == 1349 and ml100k_split.num_users == 943
    assert len(ml100k_split.test) == 943
    _assert_leave_one_out(ml100k, ml100k_split)


# ---------------------------------------------------------------------------------------------------------------
# MovieLens-1M (SASRec sequences.tsv)


def test_ml1m_counts(ml1m):
    stats = ml1m.stats()
    assert stats["users"] == 6040
    assert stats["items_in_catalog"] == 3416
    assert stats["items_with_interactions"] == 3416
    assert stats["interactions"] == 999_611
    assert stats["has_timestamps"] is False  # this version has the order only
    assert ml1m.notes["catalog_items_without_interactions"] == 3883 - 3416
    assert ml1m.notes.get("k_core_removed_interactions", 0) == 0


def test_ml1m_item_text_and_latin1_titles(ml1m):
    items = ml1m.catalog.items.set_index("item_id")
    assert items.loc["1", "text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert items.loc["73", "title"] == "Misérables, Les (1995)"
    assert items.loc["649", "title"] == "Cold Fever (Á köldum klaka) (1994)"
    assert items.loc["649", "text"] == "Cold Fever (Á köldum klaka) (1994). Genres: Comedy, Drama"
    assert not items["text"].str.contains("\ufffd|Ã", regex=True).any()


def test_ml1m_order_follows_position(ml1m, ml1m_folder):
    seq = pd.read_csv(ml1m_folder / "sequences.tsv", sep="\t", dtype=str)
    seq["pos"] = seq["position"].astype(int)
    # user 5988 is SASRec's user 1: 79 items, last three 410, 830, 1713
    assert _sequence_ids(ml1m, "5988")[-3:] == ["410", "830", "1713"]
    assert len(_sequence_ids(ml1m, "5988")) == 79
    expected = seq.sort_values(["orig_user", "pos"])
    events = ml1m.interactions.events
    assert events["user_id"].tolist() == expected["orig_user"].tolist()
    assert events["item_id"].tolist() == expected["orig_movie"].tolist()


def test_ml1m_order_survives_shuffled_rows(ml1m_folder, tmp_path):
    """Order comes from `position`, not from where a row sits in the file."""
    seq = pd.read_csv(ml1m_folder / "sequences.tsv", sep="\t", dtype=str)
    subset = seq[seq["sas_user"].astype(int) <= 50]
    for name in ("movies.dat", "users.dat"):
        (tmp_path / name).write_bytes((ml1m_folder / name).read_bytes())
    subset.sample(frac=1.0, random_state=0).to_csv(tmp_path / "sequences.tsv", sep="\t", index=False)
    shuffled = load_dataset(DataConfig(name="movielens-1m", path=str(tmp_path), k_core=0)).interactions.events
    ordered = subset.assign(pos=subset["position"].astype(int)).sort_values(["orig_user", "pos"])
    assert shuffled["item_id"].tolist() == ordered["orig_movie"].tolist()
    assert shuffled["user_id"].tolist() == ordered["orig_user"].tolist()


def test_ml1m_leave_one_out(ml1m, ml1m_split):
    assert len(ml1m_split.test) == len(ml1m_split.valid) == 6040
    assert sum(len(t) for t in ml1m_split.train) == 999_611 - 2 * 6040
    assert ml1m_split.train_timestamps is None
    row = int(np.flatnonzero(ml1m_split.user_ids[ml1m_split.test.users] == "5988")[0])
    assert ml1m_split.item_id(int(ml1m_split.test.targets[row][0])) == "1713"
    assert ml1m_split.item_id(int(ml1m_split.valid.targets[row][0])) == "830"
    assert ml1m_split.item_id(int(ml1m_split.test.histories[row][-1])) == "830"
    assert ml1m_split.item_index("1713") not in ml1m_split.test.histories[row][-1:].tolist()
    _assert_leave_one_out(ml1m, ml1m_split)


# ---------------------------------------------------------------------------------------------------------------
# Amazon Beauty (S3-Rec version)


def test_beauty_counts(beauty):
    stats = beauty.stats()
    assert stats["users"] == 22_363
    assert stats["items_in_catalog"] == 12_101
    assert stats["items_with_interactions"] == 12_101
    assert stats["interactions"] == 198_502
    assert stats["has_timestamps"] is True
    assert stats["history_len_min"] >= 5


def test_beauty_item_text(beauty):
    items = beauty.catalog.items.set_index("item_id")
    assert items.loc["B004756YJA", "text"] == (
        "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce. Categories: Makeup, Nails, Nail Polish")
    # the root category is dropped, every item has a title
    assert not any("Beauty" in categories for categories in items["categories"])
    assert items["categories"].map(len).min() >= 1
    assert not items["text"].str.startswith(".").any()
    short = items[items["title"].str.len() < 400]  # longer titles use up the 512-character cap
    assert len(short) > 12_000
    assert short["text"].str.contains(". Categories: ", regex=False).all()
    assert items["text"].str.len().max() <= 512


def test_beauty_order_follows_position_with_timestamp_ties(beauty, beauty_folder):
    raw = pd.read_csv(beauty_folder / "interactions.tsv", sep="\t", dtype=str)
    raw["pos"] = raw["position"].astype(int)
    raw["ts"] = raw["timestamp"].astype(int)
    # ties are common, so the timestamp alone cannot give the order
    assert raw.duplicated(["user_id", "ts"]).sum() > 10_000
    expected = raw.sort_values(["user_id", "pos"])
    events = beauty.interactions.events
    assert events["item_id"].tolist() == expected["asin"].tolist()
    assert events["timestamp"].tolist() == expected["ts"].tolist()
    assert (events.groupby("user_id")["timestamp"].diff().dropna() >= 0).all()


def test_beauty_order_survives_shuffled_rows(beauty_folder, tmp_path):
    raw = pd.read_csv(beauty_folder / "interactions.tsv", sep="\t", dtype=str)
    subset = raw[raw["user_idx"].astype(int) <= 500]
    subset.sample(frac=1.0, random_state=1).to_csv(tmp_path / "interactions.tsv", sep="\t", index=False)
    (tmp_path / "items.jsonl").write_bytes((beauty_folder / "items.jsonl").read_bytes())
    events = load_dataset(DataConfig(name="amazon-beauty", path=str(tmp_path), k_core=0)).interactions.events
    ordered = subset.assign(pos=subset["position"].astype(int)).sort_values(["user_id", "pos"])
    assert events["item_id"].tolist() == ordered["asin"].tolist()


def test_beauty_leave_one_out(beauty, beauty_split):
    assert len(beauty_split.test) == 22_363
    assert sum(len(t) for t in beauty_split.train) == 198_502 - 2 * 22_363
    # training timestamps line up with training items
    assert [len(t) for t in beauty_split.train_timestamps] == [len(t) for t in beauty_split.train]
    _assert_leave_one_out(beauty, beauty_split)


@pytest.mark.parametrize("name", ["movielens-100k", "movielens-1m"])
def test_utf8_copy_reads_identically(name, shared_datasets, tmp_path):
    """A Latin-1 MovieLens file re-encoded as UTF-8 (with or without BOM) gives the same catalog."""
    from llmrec.data.movielens import load_movielens_1m, load_movielens_100k

    source = shared_datasets / name
    if name == "movielens-100k":
        loader, item_file, files = load_movielens_100k, "u.item", ["u.item", "u.genre", "u.user", "u.data"]
    else:
        loader, item_file, files = load_movielens_1m, "movies.dat", ["movies.dat", "users.dat"]
    latin1 = (source / item_file).read_bytes()
    assert b"\xe9" in latin1  # é as Latin-1: the test is meaningful
    catalogs = []
    for variant, content in (("latin1", latin1), ("utf8", latin1.decode("latin-1").encode("utf-8")),
                             ("utf8-bom", b"\xef\xbb\xbf" + latin1.decode("latin-1").encode("utf-8"))):
        copy = tmp_path / variant
        copy.mkdir()
        for f in files:
            (copy / f).write_bytes((source / f).read_bytes())
        (copy / item_file).write_bytes(content)
        if name == "movielens-1m":  # a one-row sequences file keeps this fast
            (copy / "sequences.tsv").write_text(
                "sas_user\tsas_item\torig_user\torig_movie\tposition\n1\t1\t1\t1\t1\n", encoding="ascii")
        catalogs.append(loader(copy).catalog.items)
    assert len(catalogs[0]) == (1682 if name == "movielens-100k" else 3883)
    for items in catalogs[1:]:
        pd.testing.assert_frame_equal(items, catalogs[0])
