"""Per-item facts a profile is written from: a display title and a list of categories (genres, shop categories)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmrec.data.schema import ITEM_ID, TEXT, Catalog
from llmrec.data.split import Split
from llmrec.errors import ConfigError
from llmrec.text import clean_text

CATEGORY_COLUMNS = ("genres", "categories", "category", "genre", "tags")
"""Catalog columns tried, in order, when no category column is configured."""


@dataclass
class CatalogFacts:
    """Ids, titles, categories and popularity indexed like the split's items (index 0 = padding), then the items
    added while serving (`put`). Readers that index them (the claim checker, the profile writer's title
    matcher) rebuild when `version` changes."""

    item_ids: list[str]
    titles: list[str]
    categories: list[tuple[str, ...]]
    popularity: np.ndarray
    """Percentile (0..1) of each item's training interactions: well-known items make clearer examples."""
    title_chars: int = 80
    """Titles are cleaned and capped at this many characters."""
    version: int = field(default=0, compare=False)
    """Grows with every `put`."""

    @classmethod
    def from_catalog(cls, catalog: Catalog, split: Split, category_column: str | None = None,
                     title_chars: int = 80) -> "CatalogFacts":
        """Facts for every split item; titles from `title` (else the item text), cleaned and capped."""
        items = catalog.items.set_index(ITEM_ID)
        column = category_column or next((c for c in CATEGORY_COLUMNS if c in items.columns), None)
        if column is not None and column not in items.columns:
            raise ConfigError(f"profile.category_column {column!r} is not a catalog column "
                              f"(columns: {', '.join(map(str, items.columns))})")
        rows = items.reindex(split.item_ids)
        title_source = rows["title"] if "title" in rows.columns else rows[TEXT]
        titles = [""] + [clean_text(t, title_chars) for t in title_source.fillna("")]
        if column is None:
            categories: list[tuple[str, ...]] = [()] * len(titles)
        else:
            categories = [()] + [_as_categories(v) for v in rows[column]]
        return cls([""] + [str(i) for i in split.item_ids], titles, categories,
                   popularity_percentiles(split.train_popularity()), title_chars)

    def __len__(self) -> int:
        return len(self.titles)

    def put(self, item: int, item_id: str, title: str, categories: object) -> None:
        """Set an item's facts, cleaned as the catalog's are (`title`: the title, else the item's text;
        `categories`: anything `from_catalog` reads as categories); `item` = len(self) adds an item (added while
        serving: no training interactions, popularity 0)."""
        if not 0 < item <= len(self):
            raise IndexError(f"item index {item} is neither a known item nor the next one ({len(self)})")
        facts = (str(item_id), clean_text(title, self.title_chars), _as_categories(categories))
        if item == len(self):
            for column, value in zip((self.item_ids, self.titles, self.categories), facts):
                column.append(value)
            self.popularity = np.append(self.popularity, 0.0)
        else:
            self.item_ids[item], self.titles[item], self.categories[item] = facts
        self.version += 1


def popularity_percentiles(counts: np.ndarray) -> np.ndarray:
    """Each item's rank by training interactions `counts` (index 0 = padding) as a fraction from 0 to 1."""
    return counts.argsort().argsort() / max(1, len(counts) - 1)


def _as_categories(value: object) -> tuple[str, ...]:
    """Category names from a list, from nested lists of category paths (Amazon style: `[["Beauty", "Skin Care"]]`
    gives `Beauty > Skin Care`), or from one string split on `|` or `,` (a string holding a JSON list is read as
    that list); blanks and repeats dropped."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, (list, tuple, np.ndarray)):
        names = [_category_path(v) for v in value]
    elif value is None or (isinstance(value, float) and pd.isna(value)):
        names = []
    else:
        text = str(value)
        names = text.split("|") if "|" in text else text.split(",")
    return tuple(dict.fromkeys(clean_text(n, 40) for n in names if clean_text(n, 40)))


def _category_path(value: object) -> str:
    """One category, or a path of them (a nested list) joined with ` > `."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return " > ".join(clean_text(v, 40) for v in value if clean_text(v, 40))
    return str(value)
