"""EventStore: the durable log of user-item interactions, in a SQLite file or a PostgreSQL database
(`llmrec.database`).

`append` returns only after its transaction is committed (and synced), so an acknowledged event survives a killed
process (and a power loss, as far as the database promises). One store may be shared by threads, and several
processes, on one machine (SQLite) or several (PostgreSQL), may append to the same log. Event ids commit in the
order they are given, so a process follows the others' appends with `events_since(the last id it saw)`.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.data.schema import PLAUSIBLE_TIMESTAMPS, plausible_timestamps
from llmrec.database import Database, open_database
from llmrec.errors import DataError

MAX_ID_CHARS = 256
MAX_CONTEXT_KEYS = 32
MAX_CONTEXT_VALUE_CHARS = 256

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        event_id {auto_id}, user_id TEXT NOT NULL, item_id TEXT NOT NULL, timestamp DOUBLE PRECISION NOT NULL,
        context TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, timestamp, event_id)",
)
_COLUMNS = "event_id, user_id, item_id, timestamp, context"


@dataclass(frozen=True)
class Event:
    """One acknowledged interaction; `event_id` grows with every append and is never reused."""

    event_id: int
    user_id: str
    item_id: str
    timestamp: float
    context: dict[str, str]


class EventStore:
    """An append-only interaction log."""

    def __init__(self, location: str | Path | Database) -> None:
        """`location`: a SQLite file (created with its folder when missing) or a `postgresql://` URL."""
        self.db = open_database(location)
        self.db.create([statement.format(auto_id=self.db.auto_id) for statement in _SCHEMA])

    def append(self, user_id: str, item_id: str, timestamp: float | None = None,
               context: dict[str, str] | None = None) -> Event:
        """Validate and store one interaction (`timestamp` defaults to now); returns once it is committed.

        Raises DataError for an empty, over-long or control-character id, a timestamp that is not a number of
        seconds from 1970-01-01 to a day ahead of now (`llmrec.data.schema.plausible_timestamps`), or a context
        that is not a flat str -> str mapping within the size limits."""
        user = clean_id(user_id, "user_id")
        item = clean_id(item_id, "item_id")
        when = _clean_timestamp(time.time() if timestamp is None else timestamp)
        extra = _clean_context(context)
        with self.db.transaction() as tx:
            self.db.lock_for_append(tx, "events")
            (event_id,) = tx.execute("INSERT INTO events (user_id, item_id, timestamp, context) VALUES (?, ?, ?, ?) "
                                     "RETURNING event_id",
                                     (user, item, when, json.dumps(extra, ensure_ascii=False, sort_keys=True))
                                     ).fetchone()
        return Event(int(event_id), user, item, when, extra)

    def history(self, user_id: str) -> list[Event]:
        """A user's events, oldest first (ties in time keep the order they were appended in)."""
        return self._select("WHERE user_id=? ORDER BY timestamp, event_id", (user_id,))

    def users(self) -> list[str]:
        """Every user with at least one event, sorted (by code point, whatever the database's collation)."""
        with self.db.transaction() as tx:
            return sorted(row[0] for row in tx.execute("SELECT DISTINCT user_id FROM events"))

    def count(self, user_id: str | None = None) -> int:
        """How many events are stored (for one user, when given)."""
        query = "SELECT COUNT(*) FROM events" + (" WHERE user_id=?" if user_id is not None else "")
        with self.db.transaction() as tx:
            return int(tx.execute(query, (user_id,) if user_id is not None else ()).fetchone()[0])

    def events_since(self, event_id: int) -> list[Event]:
        """Events appended after `event_id`, in append order (0 gives every event)."""
        return self._select("WHERE event_id>? ORDER BY event_id", (int(event_id),))

    def close(self) -> None:
        """Close the database connections this store keeps open (PostgreSQL's pool)."""
        self.db.close()

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Event]:
        with self.db.transaction() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM events {where}", args).fetchall()
        return [Event(int(e), u, i, float(t), json.loads(c)) for e, u, i, t, c in rows]


def clean_id(value: Any, name: str) -> str:
    """A user or item id as it is stored: stripped; DataError when empty, over MAX_ID_CHARS or holding control
    characters."""
    if not isinstance(value, str):
        raise DataError(f"{name} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise DataError(f"{name} must not be empty")
    _check_text(text, name, MAX_ID_CHARS)
    return text


def _clean_timestamp(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"timestamp must be a number of seconds since the epoch, got {type(value).__name__}")
    if not math.isfinite(value):
        raise DataError(f"timestamp must be finite, got {value}")
    if not plausible_timestamps(value):
        raise DataError(f"timestamp must be unix seconds {PLAUSIBLE_TIMESTAMPS}, got {value}")
    return float(value)


def _clean_context(context: Any) -> dict[str, str]:
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise DataError(f"context must be a mapping of strings to strings, got {type(context).__name__}")
    if len(context) > MAX_CONTEXT_KEYS:
        raise DataError(f"context has {len(context)} keys; at most {MAX_CONTEXT_KEYS} are allowed")
    for key, value in context.items():
        if not isinstance(key, str) or not key:
            raise DataError(f"context keys must be non-empty strings, got {key!r}")
        if not isinstance(value, str):
            raise DataError(f"context[{key!r}] must be a string, got {type(value).__name__}")
        _check_text(key, "a context key", MAX_ID_CHARS)
        _check_text(value, f"context[{key!r}]", MAX_CONTEXT_VALUE_CHARS)
    return dict(context)


def _check_text(text: str, name: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise DataError(f"{name} has {len(text)} characters; at most {max_chars} are allowed")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise DataError(f"{name} contains control characters: {text[:40]!r}")
