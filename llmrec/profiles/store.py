"""ProfileStore: profiles in SQLite (WAL), keyed by (dataset, user, cut-off, prompt version, model id).

A batch is written in one transaction, so a killed job loses at most the batch in flight. `export`/`load_export`
move a store through a compressed JSON-lines file (how benchmark profiles are committed under bench/).
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Iterable, Iterator

from llmrec.errors import DataError
from llmrec.profiles.writer import Profile
from llmrec.sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    dataset TEXT NOT NULL, user_id TEXT NOT NULL, cutoff INTEGER NOT NULL, prompt_version TEXT NOT NULL,
    model_id TEXT NOT NULL, history_hash TEXT NOT NULL, profile TEXT NOT NULL,
    PRIMARY KEY (dataset, user_id, cutoff, prompt_version, model_id)
)
"""


class ProfileStore:
    """Profiles on disk; safe to open from several processes (SQLite WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def put(self, profiles: Iterable[Profile], replace: bool = True) -> int:
        """Insert profiles in one transaction, replacing those with the same key (or, with `replace=False`,
        keeping them); returns how many were given."""
        rows = [_row(p) for p in profiles]
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._connect() as db:
            db.executemany(f"{verb} INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def delete(self, profiles: Iterable[Profile]) -> int:
        """Remove these profiles (by key) in one transaction; returns how many were given."""
        keys = [_row(p)[:5] for p in profiles]
        with self._connect() as db:
            db.executemany("DELETE FROM profiles WHERE dataset=? AND user_id=? AND cutoff=? AND prompt_version=? "
                           "AND model_id=?", keys)
        return len(keys)

    def get(self, dataset: str, user_id: str, prompt_version: str, model_id: str,
            cutoff: int | None = None) -> Profile | None:
        """The stored profile for this key; with `cutoff` None, the one with the latest cut-off."""
        query = ("SELECT profile FROM profiles WHERE dataset=? AND user_id=? AND prompt_version=? AND model_id=?"
                 + (" AND cutoff=?" if cutoff is not None else "") + " ORDER BY cutoff DESC LIMIT 1")
        args = (dataset, user_id, prompt_version, model_id) + ((cutoff,) if cutoff is not None else ())
        with self._connect() as db:
            row = db.execute(query, args).fetchone()
        return Profile.from_dict(json.loads(row[0])) if row else None

    def history_hashes(self, dataset: str, prompt_version: str, model_id: str) -> dict[tuple[str, int], str]:
        """(user, cut-off) -> history hash of every stored profile for this dataset, prompt and model."""
        with self._connect() as db:
            rows = db.execute("SELECT user_id, cutoff, history_hash FROM profiles "
                              "WHERE dataset=? AND prompt_version=? AND model_id=?",
                              (dataset, prompt_version, model_id)).fetchall()
        return {(user, cutoff): digest for user, cutoff, digest in rows}

    def llm_texts(self, dataset: str, prompt_version: str, model_id: str) -> set[str]:
        """The distinct LLM-written texts stored for this dataset, prompt and model."""
        with self._connect() as db:
            rows = db.execute("SELECT profile FROM profiles WHERE dataset=? AND prompt_version=? AND model_id=?",
                              (dataset, prompt_version, model_id)).fetchall()
        profiles = (json.loads(text) for (text,) in rows)
        return {p["text"] for p in profiles if p["source"] == "llm"}

    def profiles(self, dataset: str | None = None) -> Iterator[Profile]:
        """Every stored profile (of one dataset, when given)."""
        query = "SELECT profile FROM profiles" + (" WHERE dataset=?" if dataset else "") + " ORDER BY rowid"
        with self._connect() as db:
            for (text,) in db.execute(query, (dataset,) if dataset else ()):
                yield Profile.from_dict(json.loads(text))

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM profiles").fetchone()[0])

    def export(self, path: str | Path, dataset: str | None = None) -> int:
        """Write profiles as gzip-compressed JSON lines (atomically); returns how many."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # processes may export side by side
        count = 0
        with gzip.open(partial, "wt", encoding="utf-8") as out:
            for profile in self.profiles(dataset):
                out.write(json.dumps(profile.to_dict(), ensure_ascii=False) + "\n")
                count += 1
        partial.replace(path)
        return count

    def load_export(self, path: str | Path, replace: bool = True) -> int:
        """Add the profiles of an `export` file (see `put` for `replace`); returns how many the file holds."""
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                profiles = [Profile.from_dict(json.loads(line)) for line in lines if line.strip()]
        except (OSError, EOFError, json.JSONDecodeError, TypeError, KeyError) as exc:
            raise DataError(f"{path}: not a profile export ({exc})") from exc
        return self.put(profiles, replace)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)


def _row(profile: Profile) -> tuple:
    p = profile.provenance
    return (p.dataset, profile.user_id, p.cutoff, p.prompt_version, p.model_id, p.history_hash,
            json.dumps(profile.to_dict(), ensure_ascii=False))
