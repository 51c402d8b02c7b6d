"""ItemLog: the durable log of items added, changed and deleted while serving, in a SQLite file or a PostgreSQL
database (`llmrec.database`), like the event log (`llmrec.online.events`).

`append` returns only after its transaction is committed (and synced), so an acknowledged change survives a killed
process. Log ids commit in the order they are given, so the serving facade follows the log with a
`llmrec.online.tail.LogTail` over `items_since(log_id)`: at load every change (after the catalog, before the
events, which may name these items), at each request the changes any process appended since.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from llmrec.database import Database, open_database
from llmrec.errors import DataError
from llmrec.online.events import clean_id
from llmrec.text import clean_input_text, clean_text

Action = Literal["add", "update", "delete"]
ACTIONS: tuple[Action, ...] = ("add", "update", "delete")
MAX_CATEGORIES = 64
MAX_CATEGORY_CHARS = 256
MAX_TITLE_CHARS = 512

_SCHEMA = """CREATE TABLE IF NOT EXISTS items (
    log_id {auto_id}, action TEXT NOT NULL, item_id TEXT NOT NULL, text TEXT NOT NULL, title TEXT NOT NULL,
    categories TEXT NOT NULL, timestamp DOUBLE PRECISION NOT NULL
)"""
_COLUMNS = "log_id, action, item_id, text, title, categories, timestamp"


@dataclass(frozen=True)
class ItemChange:
    """One acknowledged change; `log_id` grows with every append and is never reused. A `delete` has no text,
    title or categories."""

    log_id: int
    action: Action
    item_id: str
    text: str
    title: str
    categories: tuple[str, ...]
    timestamp: float


class ItemLog:
    """An append-only log of item changes; texts longer than `max_text_chars` are refused."""

    def __init__(self, location: str | Path | Database, max_text_chars: int) -> None:
        """`location`: a SQLite file (created with its folder when missing) or a `postgresql://` URL."""
        self.db = open_database(location)
        self.db.create([_SCHEMA.format(auto_id=self.db.auto_id)])
        self.max_text_chars = max_text_chars

    def append(self, action: Action, item_id: str, text: str = "", title: str | None = None,
               categories: Sequence[str] = ()) -> ItemChange:
        """Validate and store one change; returns once it is committed. An `add` or `update` needs the item's
        text (cleaned like catalog text: `llmrec.text.clean_input_text`); its title (default: none, the text
        stands in) and categories are cleaned the same way.

        Raises DataError for an unknown action, a bad id (`llmrec.online.events.clean_id`), an empty or over-long
        text, or categories that are not a list of strings within the limits."""
        if action not in ACTIONS:
            raise DataError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        item = clean_id(item_id, "item_id")
        if action == "delete":
            body, name, names = "", "", ()
        else:
            body = clean_input_text(text, "text", self.max_text_chars)
            name = _clean_title(title)
            names = _clean_categories(categories)
        when = time.time()
        with self.db.transaction() as tx:
            self.db.lock_for_append(tx, "items")
            (log_id,) = tx.execute("INSERT INTO items (action, item_id, text, title, categories, timestamp) "
                                   "VALUES (?, ?, ?, ?, ?, ?) RETURNING log_id",
                                   (action, item, body, name, json.dumps(names, ensure_ascii=False), when)).fetchone()
        return ItemChange(int(log_id), action, item, body, name, names, when)

    def items_since(self, log_id: int) -> list[ItemChange]:
        """Changes appended after `log_id`, in append order (0 gives every change)."""
        with self.db.transaction() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM items WHERE log_id>? ORDER BY log_id", (int(log_id),)).fetchall()
        return [ItemChange(int(i), a, item, text, title, tuple(json.loads(c)), float(t))
                for i, a, item, text, title, c, t in rows]

    def count(self) -> int:
        """How many changes are stored."""
        with self.db.transaction() as tx:
            return int(tx.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def close(self) -> None:
        """Close the database connections this log keeps open (PostgreSQL's pool)."""
        self.db.close()


def _clean_title(title: Any) -> str:
    if title is None:
        return ""
    if not isinstance(title, str):
        raise DataError(f"title must be a string, got {type(title).__name__}")
    return clean_text(title, MAX_TITLE_CHARS)


def _clean_categories(categories: Any) -> tuple[str, ...]:
    if isinstance(categories, str) or not isinstance(categories, (list, tuple)):
        raise DataError(f"categories must be a list of strings, got {type(categories).__name__}")
    if len(categories) > MAX_CATEGORIES:
        raise DataError(f"{len(categories)} categories; at most {MAX_CATEGORIES} are allowed")
    if not all(isinstance(c, str) for c in categories):
        raise DataError("categories must be a list of strings")
    names = (clean_text(c, MAX_CATEGORY_CHARS) for c in categories)
    return tuple(dict.fromkeys(n for n in names if n))
