"""Amazon review datasets (McAuley et al. 2014/2015): the S3-Rec/P5 "Beauty" 5-core version
(`interactions.tsv` + `items.jsonl`) or the original `reviews_<Cat>_5.json.gz` + `meta_<Cat>.json.gz` files."""

from __future__ import annotations

import ast
import gzip
import html
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from llmrec.data.schema import Catalog, Dataset, Interactions
from llmrec.data.tables import read_delimited, to_numbers
from llmrec.errors import DataError
from llmrec.text import load_template

log = logging.getLogger(__name__)
_ROOT_CATEGORIES = {"Beauty"}


def load_amazon(folder: str | Path, name: str = "amazon-beauty", category: str = "Beauty") -> Dataset:
    """Load the processed version when present, else the original review + metadata dumps."""
    folder = Path(folder)
    if (folder / "interactions.tsv").is_file():
        return _load_processed(folder, name)
    reviews = _first_existing(folder, [f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json"])
    meta = _first_existing(folder, [f"meta_{category}.json.gz", f"meta_{category}.json"])
    if reviews is None or meta is None:
        raise DataError(f"{folder}: needs interactions.tsv + items.jsonl, or reviews_{category}_5.json.gz + "
                        f"meta_{category}.json.gz (https://jmcauley.ucsd.edu/data/amazon/)")
    return _load_original(reviews, meta, name)


def _load_processed(folder: Path, name: str) -> Dataset:
    events = read_delimited(folder / "interactions.tsv", "\t", None, header=True)
    missing = {"user_id", "asin", "timestamp", "position"} - set(events.columns)
    if missing:
        raise DataError(f"{folder / 'interactions.tsv'}: missing column(s) {', '.join(sorted(missing))}")
    events = to_numbers(events, ["timestamp", "position"], "interactions.tsv")
    events = events.rename(columns={"asin": "item_id"})[["user_id", "item_id", "timestamp", "position"]]
    records = list(_json_lines(folder / "items.jsonl", json.loads))
    items = pd.DataFrame({"item_id": [r.get("asin") for r in records],
                          "title": [html.unescape(r.get("title") or "") for r in records],
                          "categories": [_flatten_categories(r.get("categories")) for r in records]})
    return Dataset(name, _catalog(items, "items.jsonl"), Interactions(events, source="interactions.tsv"))


def _load_original(reviews: Path, meta: Path, name: str) -> Dataset:
    review_rows = list(_json_lines(reviews, json.loads))
    events = pd.DataFrame({"user_id": [r.get("reviewerID") for r in review_rows],
                           "item_id": [r.get("asin") for r in review_rows],
                           "timestamp": [r.get("unixReviewTime") for r in review_rows],
                           "rating": [r.get("overall") for r in review_rows]})
    # the metadata dump is Python literals, not JSON
    meta_rows = list(_json_lines(meta, ast.literal_eval))
    items = pd.DataFrame({"item_id": [r.get("asin") for r in meta_rows],
                          "title": [html.unescape(r.get("title") or "") for r in meta_rows],
                          "categories": [_flatten_categories(r.get("categories")) for r in meta_rows]})
    reviewed = set(events["item_id"])
    items = items[items["item_id"].isin(reviewed)]
    return Dataset(name, _catalog(items, meta.name), Interactions(events, source=reviews.name))


def _catalog(items: pd.DataFrame, source: str) -> Catalog:
    template = load_template("item_text", "amazon")
    items = items.assign(text=[template.render(row) for row in items.to_dict("records")])
    return Catalog(items, source=source, text_template=template.key)


def _flatten_categories(paths: Any) -> list[str]:
    """[["Beauty", "Makeup", "Nails"], ["Beauty", "Tools"]] -> ["Makeup", "Nails", "Tools"] (order kept)."""
    seen: dict[str, None] = {}
    for path in paths or []:
        for category in path if isinstance(path, list) else [path]:
            if isinstance(category, str) and category and category not in _ROOT_CATEGORIES:
                seen.setdefault(category, None)
    return list(seen)


def _json_lines(path: Path, parse) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = parse(line)
                except (ValueError, SyntaxError) as exc:
                    raise DataError(f"{path}: line {line_no} is not a valid record: {exc}") from exc
                if not isinstance(record, dict):
                    raise DataError(f"{path}: line {line_no} is not an object")
                yield record
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _first_existing(folder: Path, names: list[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)
