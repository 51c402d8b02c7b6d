"""MovieLens loaders: ML-100K (original GroupLens files) and ML-1M (the SASRec sequence version, or the original
GroupLens `ratings.dat`). The GroupLens files are Latin-1; UTF-8 copies are read too."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from llmrec.data.schema import Catalog, Dataset, Interactions
from llmrec.data.tables import read_delimited, to_numbers
from llmrec.errors import DataError
from llmrec.text import load_template

ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre")
ML1M_FILES = ("movies.dat", "users.dat")
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def load_movielens_100k(folder: str | Path) -> Dataset:
    """Read `u.data`, `u.item`, `u.genre` and `u.user` from an extracted ml-100k folder."""
    folder = Path(folder)
    _require_files(folder, ML100K_FILES)
    genre_names = read_delimited(folder / "u.genre", "|", ["name", "index"])
    genre_names = genre_names[genre_names["name"] != ""]
    genres = genre_names.sort_values("index", key=lambda s: s.astype(int))["name"].tolist()
    item_cols = ["item_id", "title", "release_date", "video_release_date", "url", *genres]
    items = read_delimited(folder / "u.item", "|", item_cols)
    flags = items[genres] == "1"
    items["genres"] = [[g for g, on in zip(genres, row) if on and g != "unknown"] for row in flags.to_numpy()]
    items["year"] = items["title"].str.extract(_YEAR, expand=False)
    catalog = _movie_catalog(items[["item_id", "title", "genres", "year"]], "u.item")

    events = read_delimited(folder / "u.data", "\t", ["user_id", "item_id", "rating", "timestamp"])
    events = to_numbers(events, ["rating", "timestamp"], "u.data")
    users = read_delimited(folder / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip"])
    return Dataset("movielens-100k", catalog, Interactions(events, source="u.data"), users.set_index("user_id"))


def load_movielens_1m(folder: str | Path) -> Dataset:
    """ML-1M: `sequences.tsv` (SASRec version, order only) when present, else GroupLens `ratings.dat`."""
    folder = Path(folder)
    _require_files(folder, ML1M_FILES)
    movies = read_delimited(folder / "movies.dat", "::", ["item_id", "title", "genres"])
    movies["genres"] = movies["genres"].str.split("|")
    movies["year"] = movies["title"].str.extract(_YEAR, expand=False)
    catalog = _movie_catalog(movies, "movies.dat")
    users = read_delimited(folder / "users.dat", "::", ["user_id", "gender", "age", "occupation", "zip"])

    if (folder / "sequences.tsv").is_file():
        seq = read_delimited(folder / "sequences.tsv", "\t", None, header=True)
        missing = {"orig_user", "orig_movie", "position"} - set(seq.columns)
        if missing:
            raise DataError(f"{folder / 'sequences.tsv'}: missing column(s) {', '.join(sorted(missing))}")
        seq = to_numbers(seq, ["position"], "sequences.tsv")
        events = seq.rename(columns={"orig_user": "user_id", "orig_movie": "item_id"})[
            ["user_id", "item_id", "position"]]
        source = "sequences.tsv"
    elif (folder / "ratings.dat").is_file():
        events = read_delimited(folder / "ratings.dat", "::", ["user_id", "item_id", "rating", "timestamp"])
        events = to_numbers(events, ["rating", "timestamp"], "ratings.dat")
        source = "ratings.dat"
    else:
        raise DataError(f"{folder}: needs sequences.tsv (SASRec version) or ratings.dat (GroupLens ml-1m)")
    return Dataset("movielens-1m", catalog, Interactions(events, source=source), users.set_index("user_id"))


def _movie_catalog(items: pd.DataFrame, source: str) -> Catalog:
    template = load_template("item_text", "movielens")
    items = items.assign(text=[template.render(row) for row in items.to_dict("records")])
    return Catalog(items, source=source, text_template=template.key)


def _require_files(folder: Path, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing file(s) {', '.join(missing)}")
