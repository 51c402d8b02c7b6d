"""On-disk embedding cache: one SQLite table `key -> float32 vector`, shared by runs and processes.

A key is `<namespace>|<template key>|<sha256 of the text>`, where the namespace names the encoder (model and
settings that change its output). Writes are transactions in WAL mode (`llmrec.sqlite`), so a process killed
mid-write loses at most the batch it was writing and never corrupts what is already stored.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from llmrec.sqlite import connect

_FILENAME = "embeddings.sqlite"
_LOOKUP_CHUNK = 500  # well below SQLite's limit on bound parameters per statement


def cache_key(namespace: str, template_key: str, text: str) -> str:
    """The cache key of `text` rendered with template `template_key` and encoded by `namespace`."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{namespace}|{template_key}|{digest}"


class EmbeddingCache:
    """Float32 vectors by key in `<cache_dir>/embeddings.sqlite`; safe to share between processes."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.path = Path(cache_dir) / _FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those `keys` that are in the cache."""
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start:start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk)
                found.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
        return found

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        """Store (or replace) one vector per key, all in one transaction."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        rows = [(key, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in zip(keys, vectors)]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)

    def count(self) -> int:
        """Number of stored vectors."""
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        """A connection whose block is one transaction; a lost cache write costs only a recomputation, so commits
        are not synced to disk one by one."""
        return connect(self.path, synchronous="NORMAL", busy_timeout_s=60.0)
