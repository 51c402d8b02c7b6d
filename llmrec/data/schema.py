"""The two tables every dataset becomes: a catalog of items with text, and a log of user interactions.

Ids are strings everywhere in this layer (a user's own ids are kept as they are); contiguous integer indices
appear only in the modelling view built by `llmrec.data.split`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmrec.data.tables import to_numbers
from llmrec.errors import DataError

log = logging.getLogger(__name__)

ITEM_ID = "item_id"
USER_ID = "user_id"
TEXT = "text"
TIMESTAMP = "timestamp"
POSITION = "position"
RATING = "rating"
CATALOG_REQUIRED = (ITEM_ID, TEXT)
INTERACTIONS_REQUIRED = (USER_ID, ITEM_ID)
FUTURE_SLACK_S = 86_400
"""How far ahead of this machine's clock a timestamp may be (for clocks that disagree a little)."""
PLAUSIBLE_TIMESTAMPS = "between 1970-01-01 (0) and a day ahead of now"
"""The unix timestamps data loading and `/events` accept (`plausible_timestamps`)."""


def plausible_timestamps(seconds: pd.Series | float) -> pd.Series | bool:
    """Where unix timestamps are neither before 1970-01-01 nor more than FUTURE_SLACK_S ahead of the clock
    (earlier ones are mostly sign or unit mistakes, later ones milliseconds read as seconds)."""
    return (seconds >= 0) & (seconds <= time.time() + FUTURE_SLACK_S)


@dataclass(frozen=True)
class Catalog:
    """Items: `item_id` (unique, non-empty string), `text` (rendered item text) and any attribute columns."""

    items: pd.DataFrame
    source: str = "catalog"
    text_template: str = "custom"
    """Key of the template that rendered `text` (e.g. `item_text/movielens.v1`); part of embedding cache keys."""

    def __post_init__(self) -> None:
        _require_columns(self.items, CATALOG_REQUIRED, self.source)
        ids = _as_id_column(self.items[ITEM_ID], self.source, ITEM_ID)
        duplicated = ids[ids.duplicated()].unique()
        if len(duplicated):
            raise DataError(f"{self.source}: {len(duplicated)} duplicate item id(s), e.g. {_sample(duplicated)}")
        text = self.items[TEXT].fillna("").astype(str).str.strip()
        object.__setattr__(self, "items", self.items.assign(**{ITEM_ID: ids, TEXT: text}).reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> np.ndarray:
        return self.items[ITEM_ID].to_numpy()

    def texts(self) -> list[str]:
        return self.items[TEXT].tolist()


@dataclass(frozen=True)
class Interactions:
    """Events: `user_id`, `item_id`, optional `timestamp` (unix seconds), `position` (order within the user,
    derived from timestamps and file order when absent), optional `rating` and context columns.

    Rows are sorted by user, then by order; `position` is 0-based and strictly increasing per user.
    """

    events: pd.DataFrame
    context_columns: tuple[str, ...] = ()
    source: str = "interactions"

    def __post_init__(self) -> None:
        frame = self.events
        _require_columns(frame, INTERACTIONS_REQUIRED, self.source)
        missing_context = [c for c in self.context_columns if c not in frame.columns]
        if missing_context:
            raise DataError(f"{self.source}: context column(s) not found: {', '.join(missing_context)}")
        frame = frame.assign(
            **{USER_ID: _as_id_column(frame[USER_ID], self.source, USER_ID),
               ITEM_ID: _as_id_column(frame[ITEM_ID], self.source, ITEM_ID)}
        )
        if TIMESTAMP in frame.columns:
            frame[TIMESTAMP] = _as_unix_seconds(frame[TIMESTAMP], self.source)
        if POSITION in frame.columns and not pd.api.types.is_integer_dtype(frame[POSITION]):
            # text (from CSV) would sort "10" before "2"; a missing position is an error, not "last"
            frame = to_numbers(frame, [POSITION], self.source, "float64")
        object.__setattr__(self, "events", _order_events(frame))

    def __len__(self) -> int:
        return len(self.events)

    @property
    def has_timestamps(self) -> bool:
        return TIMESTAMP in self.events.columns and bool(self.events[TIMESTAMP].notna().all())

    def num_users(self) -> int:
        return int(self.events[USER_ID].nunique())


@dataclass(frozen=True)
class Dataset:
    """A named catalog + interactions (+ optional user attributes indexed by user_id)."""

    name: str
    catalog: Catalog
    interactions: Interactions
    users: pd.DataFrame | None = None
    notes: dict[str, int] = field(default_factory=dict)
    """Counts of what loading changed (rows dropped, items filtered), so nothing disappears silently."""

    def stats(self) -> dict[str, float | int | str]:
        events = self.interactions.events
        n_users = self.interactions.num_users()
        n_items = int(events[ITEM_ID].nunique())
        per_user = events.groupby(USER_ID).size()
        return {
            "dataset": self.name,
            "users": n_users,
            "items_in_catalog": len(self.catalog),
            "items_with_interactions": n_items,
            "interactions": len(events),
            "density": len(events) / max(1, n_users * n_items),
            "history_len_mean": float(per_user.mean()) if n_users else 0.0,
            "history_len_median": float(per_user.median()) if n_users else 0.0,
            "history_len_min": int(per_user.min()) if n_users else 0,
            "history_len_max": int(per_user.max()) if n_users else 0,
            "has_timestamps": self.interactions.has_timestamps,
            **{f"note_{k}": v for k, v in self.notes.items()},
        }


def check_items_known(
    interactions: Interactions, catalog: Catalog, on_unknown: str = "error"
) -> tuple[Interactions, int]:
    """Make sure every interaction names a catalog item; return (interactions, number of rows dropped)."""
    known = interactions.events[ITEM_ID].isin(set(catalog.ids))
    n_unknown = int((~known).sum())
    if n_unknown == 0:
        return interactions, 0
    examples = _sample(interactions.events.loc[~known, ITEM_ID].unique())
    if on_unknown != "drop":
        raise DataError(
            f"{interactions.source}: {n_unknown} interaction(s) name item ids missing from {catalog.source}, "
            f"e.g. {examples}. Fix the files or set data.on_unknown_items=drop."
        )
    log.warning("dropped %d interaction(s) with item ids missing from the catalog (e.g. %s)", n_unknown, examples)
    kept = Interactions(interactions.events[known], interactions.context_columns, interactions.source)
    return kept, n_unknown


def check_timestamps(interactions: Interactions, on_bad: str = "error") -> tuple[Interactions, int]:
    """Make sure every timestamp is plausible (`plausible_timestamps`); return (interactions, number of rows
    dropped). `on_bad="drop"` drops the other rows, else they raise DataError naming a few of them."""
    events = interactions.events
    if TIMESTAMP not in events.columns:
        return interactions, 0
    bad = ~plausible_timestamps(events[TIMESTAMP])
    n_bad = int(bad.sum())
    if n_bad == 0:
        return interactions, 0
    rows = events.loc[bad, [USER_ID, ITEM_ID, TIMESTAMP]].head(3).itertuples(index=False)
    examples = "; ".join(f"user {u!r} item {i!r} at {t}" for u, i, t in rows) + ("; ..." if n_bad > 3 else "")
    if on_bad != "drop":
        raise DataError(f"{interactions.source}: {n_bad} timestamp(s) not {PLAUSIBLE_TIMESTAMPS} (unix seconds), "
                        f"e.g. {examples}. Fix the files or set data.on_bad_timestamps=drop.")
    log.warning("dropped %d interaction(s) with timestamps not %s (e.g. %s)", n_bad, PLAUSIBLE_TIMESTAMPS,
                examples)
    return Interactions(events[~bad], interactions.context_columns, interactions.source), n_bad


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)}; found: {', '.join(map(str, frame.columns)) or 'none'}"
        )


def _as_id_column(column: pd.Series, source: str, name: str) -> pd.Series:
    ids = column.astype("string").str.strip()
    empty = ids.isna() | (ids == "")
    if empty.any():
        rows = np.flatnonzero(empty.to_numpy())
        raise DataError(f"{source}: {len(rows)} empty {name}(s), first at data row(s) {_sample(rows + 1)}")
    return ids.astype(object)


def _as_unix_seconds(column: pd.Series, source: str) -> pd.Series:
    """Accept unix seconds (int/float or numeric strings) or ISO-8601 date strings; reject anything else,
    missing values included."""
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
    else:
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all():
            return numeric.astype("int64")
        # numbers are unix seconds, the rest date strings; what is neither (or missing) is reported below
        dates = pd.to_datetime(column.where(numeric.isna()).astype(object), errors="coerce", utc=True,
                               format="mixed")
        parsed = dates.where(numeric.isna(), pd.to_datetime(numeric, unit="s", utc=True))
    bad = parsed.isna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        raise DataError(
            f"{source}: {len(rows)} missing or unparsable timestamp(s) (expected unix seconds or ISO-8601), e.g. "
            f"{_sample(column[bad].astype(str).unique())} at data row(s) {_sample(rows + 1)}"
        )
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize("UTC")
    # not `astype("int64") // 10**9`: pandas >= 2 keeps s/ms/us resolutions, so the integer unit varies
    return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _order_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by user then (position, timestamp, file order) and renumber positions 0..n-1 per user."""
    frame = frame.reset_index(drop=True)
    keys = [USER_ID] + [c for c in (POSITION, TIMESTAMP) if c in frame.columns]
    frame = frame.assign(_file_order=np.arange(len(frame)))
    frame = frame.sort_values(keys + ["_file_order"], kind="stable").drop(columns="_file_order")
    frame[POSITION] = frame.groupby(USER_ID, sort=False).cumcount().astype("int64")
    return frame.reset_index(drop=True)


def _sample(values: np.ndarray | list, n: int = 3) -> str:
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)  # 3, not np.int64(3)
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")
