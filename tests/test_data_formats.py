"""Every supported input layout, written small in tmp_path: MovieLens (100K, 1M ratings.dat), Amazon's original
dumps, generic CSV/TSV/JSONL/Parquet with a column mapping, and Hugging Face `datasets` saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from llmrec.config import DataConfig
from llmrec.data.amazon import load_amazon
from llmrec.data.generic import load_generic, read_table
from llmrec.data.movielens import load_movielens_1m, load_movielens_100k
from llmrec.data.registry import load_dataset
from llmrec.data.split import make_split


def _sequences(dataset) -> dict[str, list[str]]:
    events = dataset.interactions.events
    return {u: g["item_id"].tolist() for u, g in events.groupby("user_id", sort=True)}


# ---------------------------------------------------------------------------------------------------------------
# MovieLens


def test_ml100k_tiny_folder(write_ml100k, tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    dataset = load_movielens_100k(folder)
    assert dataset.name == "movielens-100k"
    assert len(dataset.catalog) == 5 and len(dataset.interactions) == 10
    # order by timestamp, whatever the file order
    assert _sequences(dataset) == {"1": ["2", "1", "3", "4"], "2": ["4", "1", "2"], "3": ["2", "1", "3"]}
    items = dataset.catalog.items.set_index("item_id")
    assert items.loc["1", "text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert items.loc["3", "title"] == "Misérables, Les (1995)"  # written as Latin-1
    assert items.loc["3", "genres"] == ["Drama", "Musical"]
    events = dataset.interactions.events
    assert events["rating"].dtype == "int64" and events["timestamp"].dtype == "int64"
    assert events.loc[events["user_id"] == "1", "timestamp"].tolist() == [881250940, 881250950, 881250960,
                                                                          881250970]
    assert events["position"].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2]
    assert dataset.users.loc["2", "occupation"] == "technician"


def test_ml100k_tiny_through_load_dataset(write_ml100k, tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    dataset = load_dataset(DataConfig(name="movielens-100k", path=str(folder), k_core=0))
    # a built-in catalog keeps only interacted items (the published protocol ranks those)
    assert sorted(dataset.catalog.ids) == ["1", "2", "3", "4"]
    assert dataset.notes["catalog_items_without_interactions"] == 1
    assert dataset.notes["unknown_item_rows_dropped"] == 0


def test_ml1m_original_ratings_dat(write_ml1m, tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m")
    dataset = load_movielens_1m(folder)
    assert dataset.interactions.source == "ratings.dat"
    assert dataset.interactions.has_timestamps
    assert _sequences(dataset) == {"1": ["2", "1", "3", "4"], "2": ["4", "3", "1"]}
    events = dataset.interactions.events
    assert events.loc[events["user_id"] == "1", "rating"].tolist() == [3, 5, 4, 4]
    items = dataset.catalog.items.set_index("item_id")
    assert items.loc["3", "title"] == "Cold Fever (Á köldum klaka) (1994)"
    assert items.loc["3", "text"] == "Cold Fever (Á köldum klaka) (1994). Genres: Comedy, Drama"
    assert items.loc["3", "year"] == "1994"
    assert dataset.users.loc["1", "zip"] == "48067"
    split = make_split(load_dataset(DataConfig(name="movielens-1m", path=str(folder), k_core=0)))
    assert split.train_timestamps is not None
    user1 = split.user_index("1")
    row = list(split.test.users).index(user1)
    assert split.item_id(int(split.test.targets[row][0])) == "4"


def test_ml1m_sequences_take_precedence_over_ratings(write_ml1m, tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m")
    (folder / "sequences.tsv").write_text("sas_user\tsas_item\torig_user\torig_movie\tposition\n"
                                          "1\t1\t7\t3\t2\n1\t2\t7\t1\t1\n1\t3\t7\t2\t10\n", encoding="ascii")
    dataset = load_movielens_1m(folder)
    assert dataset.interactions.source == "sequences.tsv"
    assert not dataset.interactions.has_timestamps
    assert _sequences(dataset) == {"7": ["1", "3", "2"]}  # position 10 after 2 (numeric, not text order)


def test_movielens_utf8_copies_read_like_latin1(write_ml100k, write_ml1m, tmp_path):
    assert "\xe9".encode("latin-1") in (write_ml100k(tmp_path / "a") / "u.item").read_bytes()
    latin1 = load_movielens_100k(tmp_path / "a").catalog.items
    utf8 = load_movielens_100k(write_ml100k(tmp_path / "b", encoding="utf-8")).catalog.items
    pd.testing.assert_frame_equal(utf8, latin1)
    assert utf8.set_index("item_id").loc["3", "title"] == "Misérables, Les (1995)"
    latin1 = load_movielens_1m(write_ml1m(tmp_path / "c")).catalog.items
    utf8 = load_movielens_1m(write_ml1m(tmp_path / "d", encoding="utf-8")).catalog.items
    pd.testing.assert_frame_equal(utf8, latin1)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_windows_and_old_mac_line_endings(write_ml100k, tmp_path, newline):
    reference = load_movielens_100k(write_ml100k(tmp_path / "unix"))
    folder = write_ml100k(tmp_path / "other")
    for name in ("u.data", "u.item", "u.user", "u.genre"):
        (folder / name).write_bytes((folder / name).read_bytes().replace(b"\n", newline.encode()))
    dataset = load_movielens_100k(folder)
    pd.testing.assert_frame_equal(dataset.catalog.items, reference.catalog.items)
    pd.testing.assert_frame_equal(dataset.interactions.events, reference.interactions.events)


# ---------------------------------------------------------------------------------------------------------------
# Amazon original dumps


@pytest.mark.parametrize("compressed", [True, False])
def test_amazon_original_files(write_amazon_original, tmp_path, compressed):
    folder = write_amazon_original(tmp_path / "beauty")
    if not compressed:  # the same dumps, uncompressed
        import gzip

        for name in ("reviews_Beauty_5.json", "meta_Beauty.json"):
            (folder / name).write_bytes(gzip.decompress((folder / f"{name}.gz").read_bytes()))
            (folder / f"{name}.gz").unlink()
    dataset = load_amazon(folder)
    assert dataset.name == "amazon-beauty"
    assert dataset.interactions.source == ("reviews_Beauty_5.json.gz" if compressed else "reviews_Beauty_5.json")
    # the dump is grouped by item; each user's order comes from unixReviewTime
    assert _sequences(dataset) == {"U1": ["B002", "B003", "B001"], "U2": ["B003", "B002", "B001"]}
    items = dataset.catalog.items.set_index("item_id")
    assert sorted(items.index) == ["B001", "B002", "B003"]  # B004 was never reviewed
    assert items.loc["B001", "categories"] == ["Makeup", "Nails", "Tools"]
    assert items.loc["B001", "text"] == "Nail Polish Red. Categories: Makeup, Nails, Tools"
    assert items.loc["B002", "text"] == "L'Oréal Shampoo. Categories: Hair Care, Shampoos"
    events = dataset.interactions.events
    assert events["rating"].tolist() == [5.0] * 6
    assert events.loc[events["user_id"] == "U1", "timestamp"].tolist() == [1200000000, 1250000000, 1300000000]


def test_amazon_original_through_load_dataset(write_amazon_original, tmp_path):
    folder = write_amazon_original(tmp_path / "beauty")
    dataset = load_dataset(DataConfig(name="amazon-beauty", path=str(folder), k_core=0))
    assert dataset.stats()["interactions"] == 6 and dataset.stats()["users"] == 2
    split = make_split(dataset)
    assert [split.item_id(int(t[0])) for t in split.test.targets] == ["B001", "B001"]
    assert [split.item_id(int(t[0])) for t in split.valid.targets] == ["B003", "B002"]


def test_amazon_processed_layout(tmp_path):
    (tmp_path / "interactions.tsv").write_text(
        "user_idx\tuser_id\titem_idx\tasin\ttimestamp\tposition\n"
        "1\tA\t2\tX2\t100\t1\n1\tA\t1\tX1\t100\t0\n1\tA\t3\tX3\t90\t2\n", encoding="utf-8")
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(
        {"item_id": i, "asin": f"X{i}", "title": f"Item {i}", "categories": [["Beauty", "Cat"]]}) + "\n"
        for i in (1, 2, 3)), encoding="utf-8")
    dataset = load_amazon(tmp_path)
    # `position` decides, even against the timestamps (it is the published order)
    assert _sequences(dataset) == {"A": ["X1", "X2", "X3"]}
    assert dataset.catalog.items.set_index("item_id").loc["X1", "text"] == "Item 1. Categories: Cat"


# ---------------------------------------------------------------------------------------------------------------
# Generic files with a column mapping

EVENTS = pd.DataFrame({
    "uid": ["u1", "u1", "u1", "u2", "u2", "u2", "u3"],
    "iid": ["b", "a", "c", "a", "c", "b", "a"],
    "ts": ["2020-01-01T00:00:02Z", "2020-01-01T00:00:01Z", "2020-01-01T00:00:03Z",
           "2021-06-01", "2021-06-02", "2021-06-03", "2022-01-01T01:00:00+01:00"],
    "device": ["web", "app", "web", "app", "app", "web", "web"],
})
ITEMS = pd.DataFrame({"id": ["a", "b", "c", "d"],
                      "name": ["Alpha", "Beta, the second", "Gamma", "Delta"],
                      "description": ["first", "has \"quotes\"", "multi\nline", "never seen"]})
GENERIC_OPTIONS = {"columns": {"user_id": "uid", "item_id": "iid", "timestamp": "ts"},
                   "item_columns": {"item_id": "id"}, "text_template": "{name}. {description}",
                   "context_columns": ["device"]}


def _write_table(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.replace({"\n": " "}, regex=True).to_csv(path, sep="\t", index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    return path


def _check_generic(dataset) -> None:
    assert dataset.stats()["interactions"] == 7 and dataset.stats()["users"] == 3
    assert _sequences(dataset) == {"u1": ["a", "b", "c"], "u2": ["a", "c", "b"], "u3": ["a"]}
    events = dataset.interactions.events.set_index(["user_id", "item_id"])
    assert events.loc[("u1", "a"), "timestamp"] == 1577836801
    assert events.loc[("u2", "a"), "timestamp"] == 1622505600  # 2021-06-01 UTC
    assert events.loc[("u3", "a"), "timestamp"] == 1640995200  # 01:00+01:00 is midnight UTC
    assert events.loc[("u1", "b"), "device"] == "web"
    assert dataset.interactions.context_columns == ("device",)
    items = dataset.catalog.items.set_index("item_id")
    assert items.loc["b", "text"] in ('Beta, the second. has "quotes"',)
    assert items.loc["c", "text"] == "Gamma. multi line"
    assert "d" in items.index  # a catalog item without interactions stays (cold item)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_generic_formats(tmp_path, suffix):
    options = {**GENERIC_OPTIONS,
               "interactions": str(_write_table(EVENTS, tmp_path / f"events{suffix}")),
               "items": str(_write_table(ITEMS, tmp_path / f"items{suffix}"))}
    _check_generic(load_generic(options))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_generic_through_load_dataset_with_relative_paths(tmp_path, suffix):
    _write_table(EVENTS, tmp_path / f"events{suffix}")
    _write_table(ITEMS, tmp_path / f"items{suffix}")
    config = DataConfig(name="generic", path=str(tmp_path),
                        generic={**GENERIC_OPTIONS, "interactions": f"events{suffix}", "items": f"items{suffix}"})
    dataset = load_dataset(config)
    _check_generic(dataset)
    # generic data: no k-core by default
    assert dataset.notes == {"bad_timestamp_rows_dropped": 0, "unknown_item_rows_dropped": 0}
    split = make_split(dataset)
    assert split.num_items == 4  # the cold item is rankable


def test_generic_parquet_native_types(tmp_path):
    """Parquet keeps types: integer ids and datetime timestamps (here in milliseconds)."""
    when = pd.to_datetime(["2020-01-01 00:00:05", "2020-01-01 00:00:00", "2020-01-02 00:00:00"]).as_unit("ms")
    events = pd.DataFrame({"user": [7, 7, 8], "item": [1, 2, 1], "when": when})
    _write_table(events, tmp_path / "e.parquet")
    _write_table(pd.DataFrame({"item_id": [1, 2], "title": ["One", "Two"]}), tmp_path / "i.parquet")
    dataset = load_generic({"interactions": str(tmp_path / "e.parquet"), "items": str(tmp_path / "i.parquet"),
                            "columns": {"user_id": "user", "item_id": "item", "timestamp": "when"}})
    assert _sequences(dataset) == {"7": ["2", "1"], "8": ["1"]}
    assert dataset.interactions.events["timestamp"].tolist() == [1577836800, 1577836805, 1577923200]
    assert list(dataset.catalog.ids) == ["1", "2"]


def test_generic_position_column_is_numeric(tmp_path):
    """A `position` column read from CSV is text; it must order as numbers (10 after 9, not after 1)."""
    rows = [("u", f"i{p}", p) for p in (10, 2, 1, 9)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).to_csv(tmp_path / "e.csv", index=False)
    pd.DataFrame({"item_id": [f"i{p}" for p in (1, 2, 9, 10)], "title": "t"}).to_csv(tmp_path / "i.csv", index=False)
    dataset = load_generic({"interactions": str(tmp_path / "e.csv"), "items": str(tmp_path / "i.csv")})
    assert _sequences(dataset) == {"u": ["i1", "i2", "i9", "i10"]}


def test_generic_numeric_unix_timestamps_in_csv(tmp_path):
    pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [1600000001, 1600000000]}).to_csv(
        tmp_path / "e.csv", index=False)
    pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}).to_csv(tmp_path / "i.csv", index=False)
    dataset = load_generic({"interactions": str(tmp_path / "e.csv"), "items": str(tmp_path / "i.csv")})
    assert dataset.interactions.events["timestamp"].tolist() == [1600000000, 1600000001]
    assert _sequences(dataset) == {"u": ["b", "a"]}


def test_generic_csv_line_endings(tmp_path):
    (tmp_path / "e.csv").write_bytes(b'user_id,item_id,note\r\nu,a,"x,\r\ny"\r\nu,b,z\r\n')
    (tmp_path / "i.csv").write_bytes(b"item_id,title\ra,A\rb,B\r")
    dataset = load_generic({"interactions": str(tmp_path / "e.csv"), "items": str(tmp_path / "i.csv")})
    assert _sequences(dataset) == {"u": ["a", "b"]}
    assert dataset.catalog.texts() == ["A", "B"]


def test_generic_latin1_csv_auto_and_explicit(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"user_id,item_id\nu,a\n")
    (tmp_path / "i.csv").write_bytes("item_id,title\na,Caf\u00e9 au lait\n".encode("latin-1"))
    options = {"interactions": str(tmp_path / "e.csv"), "items": str(tmp_path / "i.csv")}
    assert load_generic(options).catalog.texts() == ["Café au lait"]
    assert load_generic({**options, "encoding": "latin-1"}).catalog.texts() == ["Café au lait"]


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets


def test_hf_saved_dataset(tmp_path):
    datasets.Dataset.from_dict({"uid": ["u1", "u1", "u2"], "iid": ["x", "y", "x"], "ts": [3, 1, 2]}).save_to_disk(
        str(tmp_path / "events"))
    datasets.Dataset.from_dict({"item_id": ["x", "y"], "title": ["Ex", "Why"]}).save_to_disk(str(tmp_path / "items"))
    options = {"interactions": f"hf:{tmp_path / 'events'}", "items": f"hf:{tmp_path / 'items'}",
               "columns": {"user_id": "uid", "item_id": "iid", "timestamp": "ts"}}
    dataset = load_generic(options)
    assert _sequences(dataset) == {"u1": ["y", "x"], "u2": ["x"]}
    assert dataset.catalog.texts() == ["Ex", "Why"]
    via_config = load_dataset(DataConfig(name="generic", generic=options))
    assert _sequences(via_config) == _sequences(dataset)


def test_hf_saved_dataset_dict_split(tmp_path):
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"user_id": ["a"], "item_id": ["1"]}),
        "other": datasets.Dataset.from_dict({"user_id": ["b", "b"], "item_id": ["1", "2"]}),
    }).save_to_disk(str(tmp_path / "events"))
    assert read_table(f"hf:{tmp_path / 'events'}")["user_id"].tolist() == ["a"]
    assert read_table(f"hf:{tmp_path / 'events'}", hf_split="other")["user_id"].tolist() == ["b", "b"]
