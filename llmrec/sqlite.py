"""The one way llmrec opens its SQLite files (profile store, event log, embedding cache).

Each `with connect(path) as db:` block is a short-lived connection and one transaction: committed when the block
ends, rolled back when it raises, and closed either way. Files are in WAL mode, so readers never block the writer
and several processes may share a file; a writer waits up to `busy_timeout_s` for another's lock. `watcher(path)`
is the one long-lived connection: it never writes, and tells whether others have (`PRAGMA data_version`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator, Literal

BUSY_TIMEOUT_S = 30.0


@contextmanager
def connect(path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL",
            busy_timeout_s: float = BUSY_TIMEOUT_S) -> Iterator[sqlite3.Connection]:
    """A connection to `path` whose block is one transaction.

    `synchronous`: FULL syncs the WAL at every commit (a committed transaction survives a power loss); NORMAL
    syncs less often (a power loss may drop the last commits, never corrupts the file): enough for a cache.
    """
    with closing(sqlite3.connect(path, timeout=busy_timeout_s)) as db:
        db.execute("PRAGMA journal_mode=WAL")  # kept by the file; a no-op once set
        db.execute(f"PRAGMA synchronous={synchronous}")  # per connection
        with db:
            yield db


def watcher(path: str | Path) -> sqlite3.Connection:
    """A connection to `path` kept open to read `PRAGMA data_version`, which changes whenever another connection
    (of any process) commits a change to the file; usable from any thread (one at a time), never writing."""
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)
