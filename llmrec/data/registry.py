"""`load_dataset(config)`: find (or download) a dataset's files, load, validate and filter it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from llmrec.config import DataConfig
from llmrec.data.amazon import load_amazon
from llmrec.data.files import download, extract_zip
from llmrec.data.filtering import k_core
from llmrec.data.generic import load_generic
from llmrec.data.movielens import load_movielens_1m, load_movielens_100k
from llmrec.data.schema import ITEM_ID, Dataset, check_items_known, check_timestamps
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "LLMREC_DATA_DIR"
"""A folder holding one sub-folder per built-in dataset (e.g. `$LLMREC_DATA_DIR/movielens-100k/u.data`)."""
DOWNLOAD_BASE_ENV = "LLMREC_DOWNLOAD_BASE_URL"
"""Replaces the scheme+host+path prefix of every download URL (a mirror, or a local server in tests)."""
SHA256: dict[str, str] = {
    # GroupLens publishes only MD5s; these are the SHA-256s TensorFlow Datasets pins for the same URLs
    # (tensorflow_datasets/url_checksums/movielens.txt: ml-100k.zip 4,924,029 bytes, ml-1m.zip 5,917,549 bytes).
    "ml-100k.zip": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "ml-1m.zip": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
}
"""The published SHA-256 of a download, by file name: checked whatever the base URL (a mirror serves the same files).
Files without one (the Amazon dumps) are not checked; the download logs their hash, to pin here."""


@dataclass(frozen=True)
class BuiltinDataset:
    """How to read and where to download one of the datasets llmrec knows by name."""

    loader: Callable[[Path], Dataset]
    marker: str
    """A file whose presence means the folder already holds the data."""
    downloads: tuple[str, ...]
    default_k_core: int
    base_url: str


BUILTIN: dict[str, BuiltinDataset] = {
    "movielens-100k": BuiltinDataset(load_movielens_100k, "u.data", ("ml-100k.zip",), 5,
                                     "https://files.grouplens.org/datasets/movielens/"),
    # the download is GroupLens' original ml-1m (ratings.dat); the SASRec sequence version is read when present
    "movielens-1m": BuiltinDataset(load_movielens_1m, "movies.dat", ("ml-1m.zip",), 5,
                                   "https://files.grouplens.org/datasets/movielens/"),
    "amazon-beauty": BuiltinDataset(load_amazon, "items.jsonl", ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"),
                                    5, "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"),
}


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "llmrec" / "datasets")


def load_dataset(config: DataConfig) -> Dataset:
    """Load the configured dataset, drop/raise on implausible timestamps and unknown items, keep only interacted
    items of built-in catalogs (as the published protocol ranks them) and apply k-core filtering."""
    if config.name == "generic":
        dataset = load_generic(config.generic, config.path)
        default_k = 0
    elif config.name in BUILTIN:
        spec = BUILTIN[config.name]
        dataset = spec.loader(dataset_folder(config.name, config.path))
        default_k = spec.default_k_core
    else:
        raise ConfigError(f"unknown dataset {config.name!r}; built-in: {', '.join(BUILTIN)}, or `generic`")
    interactions, n_bad_time = check_timestamps(dataset.interactions, config.on_bad_timestamps)
    interactions, n_unknown = check_items_known(interactions, dataset.catalog, config.on_unknown_items)
    notes = {**dataset.notes, "bad_timestamp_rows_dropped": n_bad_time, "unknown_item_rows_dropped": n_unknown}
    dataset = replace(dataset, interactions=interactions, notes=notes)
    if config.name in BUILTIN:
        dataset = _only_interacted_items(dataset)
    dataset = k_core(dataset, default_k if config.k_core is None else config.k_core)
    if len(dataset.interactions) == 0:
        raise DataError(f"{config.name}: no interactions left after filtering")
    return dataset


def dataset_folder(name: str, path: str | Path | None = None, base_url: str | None = None) -> Path:
    """The folder holding a built-in dataset: `path`, else `$LLMREC_DATA_DIR/<name>`, downloading when empty."""
    spec = BUILTIN[name]
    folder = Path(path) if path else default_data_root() / name
    # zips are extracted (the marker appears); other downloads are read as they are (amazon: no items.jsonl)
    downloaded = all((folder / f).is_file() for f in spec.downloads)
    if not (folder / spec.marker).is_file() and not downloaded:
        if path and any(folder.glob("*")):
            return folder  # a user's own copy in another layout: the loader names what is missing
        fetch_dataset(name, folder, base_url)
    return folder


def fetch_dataset(name: str, folder: str | Path, base_url: str | None = None) -> Path:
    """Download a built-in dataset's original files into `folder`, checking their SHA-256 when it is known (zips
    are extracted)."""
    folder = Path(folder)
    spec = BUILTIN[name]
    base = base_url or os.environ.get(DOWNLOAD_BASE_ENV) or spec.base_url
    folder.mkdir(parents=True, exist_ok=True)
    for filename in spec.downloads:
        target = download(base.rstrip("/") + "/" + filename, folder / filename, SHA256.get(filename))
        if filename.endswith(".zip"):
            extract_zip(target, folder)
            target.unlink()
    return folder


def _only_interacted_items(dataset: Dataset) -> Dataset:
    items = dataset.catalog.items
    used = items[ITEM_ID].isin(set(dataset.interactions.events[ITEM_ID]))
    if used.all():
        return dataset
    log.info("%s: %d catalog items without interactions left out (published protocol)", dataset.name, (~used).sum())
    catalog = replace(dataset.catalog, items=items[used])
    return replace(dataset, catalog=catalog, notes={**dataset.notes, "catalog_items_without_interactions": int((~used).sum())})
