"""Shared fixtures: the real benchmark datasets (loaded once per session, skipped when absent), writers of
tiny datasets in the original file layouts, so tests can build exactly the input they need in `tmp_path`, and a
real PostgreSQL server for the stores."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest

from postgres_server import PostgresServer, unavailable_reason as postgres_unavailable

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")


# ---------------------------------------------------------------------------------------------------------------
# Real datasets (/work/shared/datasets): skipped with a reason when the folder is not there.


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The read-only benchmark datasets folder (`../shared/datasets` beside the repository)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATASETS} does not exist")
    return SHARED_DATASETS


def _shared_folder(shared_datasets: Path, name: str) -> Path:
    folder = shared_datasets / name
    if not folder.is_dir():
        pytest.skip(f"real dataset {name} not available: {folder} does not exist")
    return folder


@pytest.fixture(scope="session")
def ml100k_folder(shared_datasets: Path) -> Path:
    return _shared_folder(shared_datasets, "movielens-100k")


@pytest.fixture(scope="session")
def ml1m_folder(shared_datasets: Path) -> Path:
    return _shared_folder(shared_datasets, "movielens-1m")


@pytest.fixture(scope="session")
def beauty_folder(shared_datasets: Path) -> Path:
    return _shared_folder(shared_datasets, "amazon-beauty")


@pytest.fixture(scope="session")
def ml100k_raw(ml100k_folder: Path):
    """ML-100K through `load_dataset` without k-core filtering (all 100,000 ratings)."""
    from llmrec.config import DataConfig
    from llmrec.data.registry import load_dataset

    return load_dataset(DataConfig(name="movielens-100k", path=str(ml100k_folder), k_core=0))


@pytest.fixture(scope="session")
def ml100k(ml100k_raw):
    """ML-100K as `load_dataset` gives it by default (5-core), derived from `ml100k_raw` to load the files once."""
    from llmrec.data.filtering import k_core
    from llmrec.data.registry import BUILTIN

    return k_core(ml100k_raw, BUILTIN["movielens-100k"].default_k_core)


@pytest.fixture(scope="session")
def ml1m(ml1m_folder: Path):
    """ML-1M (SASRec `sequences.tsv` version) through `load_dataset` with the default settings."""
    from llmrec.config import DataConfig
    from llmrec.data.registry import load_dataset

    return load_dataset(DataConfig(name="movielens-1m", path=str(ml1m_folder)))


@pytest.fixture(scope="session")
def beauty(beauty_folder: Path):
    """Amazon Beauty (S3-Rec version) through `load_dataset` with the default settings."""
    from llmrec.config import DataConfig
    from llmrec.data.registry import load_dataset

    return load_dataset(DataConfig(name="amazon-beauty", path=str(beauty_folder)))


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    from llmrec.data.split import make_split

    return make_split(ml100k)


@pytest.fixture(scope="session")
def ml1m_split(ml1m):
    from llmrec.data.split import make_split

    return make_split(ml1m)


@pytest.fixture(scope="session")
def beauty_split(beauty):
    from llmrec.data.split import make_split

    return make_split(beauty)


# ---------------------------------------------------------------------------------------------------------------
# Writers of tiny datasets in the original layouts. Each fixture returns a function, so a test can write several
# variants; the defaults give a small valid dataset.

Rating = tuple  # (user, item, rating, timestamp)

TINY_ML100K_ITEMS = {
    1: ("Toy Story (1995)", ("Animation", "Children's", "Comedy")),
    2: ("GoldenEye (1995)", ("Action", "Adventure", "Thriller")),
    3: ("Misérables, Les (1995)", ("Drama", "Musical")),
    4: ("Heat (1995)", ("Action", "Crime", "Thriller")),
    5: ("Cold Item (1999)", ("Drama",)),
}
TINY_ML100K_RATINGS = [
    # user, item, rating, timestamp; user 1's order by time is 2, 1, 3, 4 (file order differs on purpose)
    (1, 1, 5, 881250950), (1, 2, 3, 881250940), (1, 3, 4, 881250960), (1, 4, 2, 881250970),
    (2, 4, 4, 881000000), (2, 1, 2, 881000001), (2, 2, 5, 881000002),
    (3, 3, 1, 880000003), (3, 2, 3, 880000001), (3, 1, 4, 880000002),
]


def ml100k_item_line(item_id: int, title: str, genres: Iterable[str]) -> str:
    flags = ["1" if g in set(genres) else "0" for g in ML100K_GENRES]
    return "|".join([str(item_id), title, "01-Jan-1995", "", f"http://us.imdb.com/M/{item_id}", *flags])


@pytest.fixture
def write_ml100k() -> Callable[..., Path]:
    """`write_ml100k(folder, items=..., ratings=..., encoding="latin-1")` writes u.data/u.item/u.user/u.genre as
    GroupLens publishes them (Latin-1 u.item, tab-separated u.data) and returns the folder."""

    def write(folder: Path, items: dict | None = None, ratings: list[Rating] | None = None,
              encoding: str = "latin-1") -> Path:
        items = TINY_ML100K_ITEMS if items is None else items
        ratings = TINY_ML100K_RATINGS if ratings is None else ratings
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings), encoding="ascii")
        lines = [ml100k_item_line(i, title, genres) for i, (title, genres) in items.items()]
        (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode(encoding))
        users = sorted({u for u, *_ in ratings})
        (folder / "u.user").write_text("".join(f"{u}|24|M|technician|85711\n" for u in users), encoding="ascii")
        (folder / "u.genre").write_text("".join(f"{g}|{n}\n" for n, g in enumerate(ML100K_GENRES)) + "\n",
                                        encoding="ascii")
        return folder

    return write


TINY_ML1M_MOVIES = {1: ("Toy Story (1995)", "Animation|Children's|Comedy"),
                    2: ("Jumanji (1995)", "Adventure|Children's|Fantasy"),
                    3: ("Cold Fever (Á köldum klaka) (1994)", "Comedy|Drama"),
                    4: ("Heat (1995)", "Action|Crime|Thriller")}
TINY_ML1M_RATINGS = [(1, 1, 5, 978300760), (1, 2, 3, 978300750), (1, 3, 4, 978300770), (1, 4, 4, 978300780),
                     (2, 4, 3, 978200000), (2, 3, 4, 978200001), (2, 1, 5, 978200002)]


@pytest.fixture
def write_ml1m() -> Callable[..., Path]:
    """`write_ml1m(folder, movies=..., ratings=...)` writes GroupLens ml-1m (`::`-separated, Latin-1 movies.dat,
    ratings.dat) and returns the folder."""

    def write(folder: Path, movies: dict | None = None, ratings: list[Rating] | None = None,
              encoding: str = "latin-1") -> Path:
        movies = TINY_ML1M_MOVIES if movies is None else movies
        ratings = TINY_ML1M_RATINGS if ratings is None else ratings
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "movies.dat").write_bytes(
            "".join(f"{i}::{title}::{genres}\n" for i, (title, genres) in movies.items()).encode(encoding))
        (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings),
                                            encoding="ascii")
        users = sorted({u for u, *_ in ratings})
        (folder / "users.dat").write_text("".join(f"{u}::F::1::10::48067\n" for u in users), encoding="ascii")
        return folder

    return write


TINY_AMAZON_META = [
    {"asin": "B001", "title": "Nail Polish Red", "salesRank": {"Beauty": 1},
     "categories": [["Beauty", "Makeup", "Nails"], ["Beauty", "Tools"]]},
    {"asin": "B002", "title": "L'Oréal Shampoo", "categories": [["Beauty", "Hair Care", "Shampoos"]]},
    {"asin": "B003", "title": "Face Cream", "categories": [["Beauty", "Skin Care", "Face"]]},
    {"asin": "B004", "title": "Never Reviewed", "categories": [["Beauty", "Skin Care"]]},
]
TINY_AMAZON_REVIEWS = [  # reviewerID, asin, unixReviewTime; the original file is grouped by item, not by user
    ("U1", "B001", 1300000000), ("U2", "B001", 1300000500), ("U1", "B002", 1200000000),
    ("U2", "B002", 1300000400), ("U1", "B003", 1250000000), ("U2", "B003", 1300000300),
]


@pytest.fixture
def write_amazon_original() -> Callable[..., Path]:
    """`write_amazon_original(folder, reviews=..., meta=...)` writes `reviews_Beauty_5.json.gz` (JSON lines) and
    `meta_Beauty.json.gz` (Python dict literals, as McAuley's 2014 dump) and returns the folder."""

    def write(folder: Path, reviews: list[tuple] | None = None, meta: list[dict] | None = None,
              category: str = "Beauty") -> Path:
        reviews = TINY_AMAZON_REVIEWS if reviews is None else reviews
        meta = TINY_AMAZON_META if meta is None else meta
        folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(folder / f"reviews_{category}_5.json.gz", "wt", encoding="utf-8") as handle:
            for user, asin, ts in reviews:
                handle.write(json.dumps({"reviewerID": user, "asin": asin, "reviewerName": "x", "helpful": [0, 0],
                                         "reviewText": "ok", "overall": 5.0, "summary": "ok",
                                         "unixReviewTime": ts, "reviewTime": "01 1, 2011"}) + "\n")
        with gzip.open(folder / f"meta_{category}.json.gz", "wt", encoding="utf-8") as handle:
            for record in meta:
                handle.write(repr(record) + "\n")  # Python literal: single quotes, not JSON
        return folder

    return write


# ---------------------------------------------------------------------------------------------------------------
# A real PostgreSQL server (tests/postgres_server.py), started once per session; skipped with a reason when the
# binaries are not installed.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, once per engine: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("postgres_url")
