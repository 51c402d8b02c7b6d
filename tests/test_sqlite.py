"""llmrec.sqlite.connect on real SQLite files: WAL, one transaction per block, closed afterwards."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from llmrec.sqlite import connect


def test_block_is_committed_and_connection_closed(tmp_path):
    path = tmp_path / "t.sqlite"
    with connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.execute("SELECT 1")
    with connect(path, synchronous="NORMAL") as other:
        assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
        assert other.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_block_that_raises_is_rolled_back(tmp_path):
    path = tmp_path / "t.sqlite"
    with connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError, match="boom"), connect(path) as db:
        db.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


def test_a_writer_waits_for_another_writers_lock(tmp_path):
    path = tmp_path / "t.sqlite"
    with connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    holding = threading.Event()

    def hold_the_write_lock() -> None:
        with connect(path) as db:
            db.execute("INSERT INTO t VALUES (1)")  # the transaction (and its lock) lasts until the block ends
            holding.set()
            threading.Event().wait(0.3)

    writer = threading.Thread(target=hold_the_write_lock)
    writer.start()
    holding.wait(5)
    with connect(path, busy_timeout_s=5) as db:  # without a busy timeout this would fail with "database is locked"
        db.execute("INSERT INTO t VALUES (2)")
    writer.join()
    with connect(path) as db:
        assert sorted(db.execute("SELECT x FROM t").fetchall()) == [(1,), (2,)]
