"""Database: the one seam between llmrec's durable stores (the event log, the profile stores) and the engine that
keeps them, a SQLite file (the embedded default) or a PostgreSQL database (worker processes on several machines
share one).

    db = open_database("runs/demo/events.sqlite")        # or "postgresql://llmrec@db.internal:5432/llmrec"
    db.create([f"CREATE TABLE IF NOT EXISTS notes (id {db.auto_id}, text TEXT NOT NULL)"])
    with db.transaction() as tx:
        (note_id,) = tx.execute("INSERT INTO notes (text) VALUES (?) RETURNING id", ("hi",)).fetchone()

Stores write each statement once, in the SQL both engines speak: `?` parameter marks, `ON CONFLICT` upserts,
`RETURNING`, `DOUBLE PRECISION`, and `auto_id` for an auto-increment key. Each `with db.transaction()` block is
one transaction: committed when it ends, rolled back when it raises. A commit is durable: SQLite syncs its WAL
(`llmrec.sqlite`, `synchronous=FULL`), PostgreSQL flushes its WAL (`synchronous_commit`, on by default).

The seam is hand-written rather than SQLAlchemy Core: the stores need ten statements that both engines already
share, and what differs (connecting, parameter marks, the auto-increment DDL, ordering appends) fits here; psycopg's
own pool keeps PostgreSQL connections open between transactions.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

from llmrec.errors import ConfigError
from llmrec.sqlite import connect, watcher

POSTGRES_SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 10
POOL_SIZE = 4
"""The most connections one PostgreSQL `Database` (one store in one process) keeps open."""
_SCHEMA_LOCK = 0x6C6C6D726563  # the advisory lock that serialises llmrec's CREATE ... IF NOT EXISTS (b"llmrec")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class Cursor(Protocol):
    """The rows of one statement (a DB-API cursor)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Transaction(Protocol):
    """What a `Database.transaction()` block runs statements with."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...


class Database(ABC):
    """A SQLite file or a PostgreSQL database (see the module docstring); `open_database` picks one."""

    location: str
    """Where the data lives, for messages (a PostgreSQL URL without its password)."""
    auto_id: str
    """The DDL of an integer primary key that grows with every insert and is never reused."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    @abstractmethod
    def create(self, statements: Sequence[str]) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements, one process at a time."""

    @abstractmethod
    def lock_for_append(self, tx: Transaction, table: str) -> None:
        """Make `tx` the only writer of `table` until it ends, so that rows commit in the order of their
        `auto_id`s: a reader that follows the table by id (`llmrec.online.tail.LogTail`) then never skips a row
        that committed late."""

    def version(self) -> int | None:
        """A number that changes whenever a transaction of any connection, in any process, commits a change: a
        reader that saw version v and read everything then has nothing new to read while the version is still v.
        None when the engine has no cheap one (then a reader reads)."""
        return None

    def close(self) -> None:
        """Close the connections kept open; the database is not used afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


class SQLiteDatabase(Database):
    """A SQLite file in WAL mode (`llmrec.sqlite.connect`): a connection per transaction, so threads and processes
    on one machine may share it; one more connection, which never writes, is kept open to read `version`."""

    auto_id = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.location = str(self.path)
        self._watcher: sqlite3.Connection | None = None
        self._watcher_lock = threading.Lock()

    def transaction(self) -> AbstractContextManager[Transaction]:
        return connect(self.path)

    def create(self, statements: Sequence[str]) -> None:
        with self.transaction() as tx:
            for statement in statements:
                tx.execute(statement)

    def lock_for_append(self, tx: Transaction, table: str) -> None:
        """Nothing to do: SQLite lets one transaction write at a time."""

    def version(self) -> int:
        """`PRAGMA data_version` of the kept connection: it changes with every commit of every other connection
        to the file, and this one never writes (a few microseconds, against a connection per read)."""
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = watcher(self.path)
            return int(self._watcher.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._watcher_lock:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3, with a pool of at most `pool_size` connections."""

    auto_id = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.location = _without_password(url)
        try:  # fail now, with the server's reason, rather than at the first request
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {self.location}: {exc}".strip()) from None
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=True, name=self.location,
                                    kwargs={"connect_timeout": CONNECT_TIMEOUT_S})
        self._pool.wait(CONNECT_TIMEOUT_S)  # ready, and its background filling is done

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._pool.connection() as connection:  # commits, or rolls back on an exception
            yield _QmarkTransaction(connection)

    def create(self, statements: Sequence[str]) -> None:
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))  # concurrent CREATEs IF NOT EXISTS clash
            for statement in statements:
                tx.execute(statement)

    def lock_for_append(self, tx: Transaction, table: str) -> None:
        tx.execute(f"LOCK TABLE {sql_identifier(table)} IN EXCLUSIVE MODE")  # readers are not blocked

    def close(self) -> None:
        self._pool.close()


class _QmarkTransaction:
    """A psycopg connection that takes the `?` parameter marks llmrec's statements are written with."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._connection.execute(_format_marks(sql), args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(_format_marks(sql), list(rows))


def open_database(location: str | Path | Database) -> Database:
    """The database at `location`: a `postgresql://` (or `postgres://`) URL, else a SQLite file path (its folder
    is created); a `Database` is returned as it is. ConfigError for another URL scheme or an unreachable server."""
    if isinstance(location, Database):
        return location
    if isinstance(location, str) and is_postgres_url(location):
        return PostgresDatabase(location)
    return SQLiteDatabase(location)


def is_postgres_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL database (a URL) rather than a SQLite file; ConfigError for a URL of
    another scheme (e.g. a misspelt `postgressql://`, which would otherwise become a file name)."""
    match = _SCHEME.match(location)
    if match is None:
        return False
    if match.group(1).lower() not in POSTGRES_SCHEMES:
        raise ConfigError(f"unsupported database URL {_without_password(location)!r}: use a SQLite file path or "
                          f"a {' or '.join(s + '://' for s in POSTGRES_SCHEMES)} URL")
    return True


def _format_marks(sql: str) -> str:
    """`?` -> `%s` (llmrec's statements hold no other `?` or `%`)."""
    return sql.replace("?", "%s")


def sql_identifier(name: str) -> str:
    """`name`, checked to be a plain lower-case SQL identifier (a table name put into a statement)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _without_password(url: str) -> str:
    """The URL with its password (`user:secret@` or `password=secret`) masked."""
    masked = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", masked)
