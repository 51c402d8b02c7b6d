"""ProfileStore: profiles keyed by (dataset, user, cut-off, prompt version, model id), in a SQLite file or a
PostgreSQL database (`llmrec.database`).

A batch is written in one transaction, so a killed job loses at most the batch in flight. `export`/`load_export`
move a store through a compressed JSON-lines file (how benchmark profiles are committed under bench/).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from llmrec.database import Database, open_database, sql_identifier
from llmrec.errors import DataError
from llmrec.profiles.writer import Profile

_KEY = "dataset, user_id, cutoff, prompt_version, model_id"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {{table}} (
    dataset TEXT NOT NULL, user_id TEXT NOT NULL, cutoff INTEGER NOT NULL, prompt_version TEXT NOT NULL,
    model_id TEXT NOT NULL, history_hash TEXT NOT NULL, profile TEXT NOT NULL,
    PRIMARY KEY ({_KEY})
)
"""


class ProfileStore:
    """Profiles in one table of a database; safe to share between threads and processes."""

    def __init__(self, location: str | Path | Database, table: str = "profiles") -> None:
        """`location`: a SQLite file (created with its folder when missing), a `postgresql://` URL, or an open
        `Database` (another table of the same database: see `beside`); `table`: a plain SQL name."""
        self.db = open_database(location)
        self.table = sql_identifier(table)
        self.db.create([_SCHEMA.format(table=self.table)])

    def beside(self, table: str) -> "ProfileStore":
        """Another store in this one's database (e.g. the interest summaries beside the long-term profiles)."""
        return ProfileStore(self.db, table)

    def put(self, profiles: Iterable[Profile], replace: bool = True) -> int:
        """Insert profiles in one transaction, replacing those with the same key (or, with `replace=False`,
        keeping them); returns how many were given."""
        rows = [_row(p) for p in profiles]
        conflict = ("DO UPDATE SET history_hash=excluded.history_hash, profile=excluded.profile" if replace
                    else "DO NOTHING")
        with self.db.transaction() as tx:
            tx.executemany(f"INSERT INTO {self.table} VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT ({_KEY}) {conflict}",
                           rows)
        return len(rows)

    def delete(self, profiles: Iterable[Profile]) -> int:
        """Remove these profiles (by key) in one transaction; returns how many were given."""
        keys = [_row(p)[:5] for p in profiles]
        with self.db.transaction() as tx:
            tx.executemany(f"DELETE FROM {self.table} WHERE dataset=? AND user_id=? AND cutoff=? "
                           "AND prompt_version=? AND model_id=?", keys)
        return len(keys)

    def get(self, dataset: str, user_id: str, prompt_version: str, model_id: str,
            cutoff: int | None = None) -> Profile | None:
        """The stored profile for this key; with `cutoff` None, the one with the latest cut-off."""
        query = (f"SELECT profile FROM {self.table} WHERE dataset=? AND user_id=? AND prompt_version=? "
                 "AND model_id=?" + (" AND cutoff=?" if cutoff is not None else "") + " ORDER BY cutoff DESC LIMIT 1")
        args = (dataset, user_id, prompt_version, model_id) + ((cutoff,) if cutoff is not None else ())
        with self.db.transaction() as tx:
            row = tx.execute(query, args).fetchone()
        return Profile.from_dict(json.loads(row[0])) if row else None

    def history_hashes(self, dataset: str, prompt_version: str, model_id: str) -> dict[tuple[str, int], str]:
        """(user, cut-off) -> history hash of every stored profile for this dataset, prompt and model."""
        with self.db.transaction() as tx:
            rows = tx.execute(f"SELECT user_id, cutoff, history_hash FROM {self.table} "
                              "WHERE dataset=? AND prompt_version=? AND model_id=?",
                              (dataset, prompt_version, model_id)).fetchall()
        return {(user, cutoff): digest for user, cutoff, digest in rows}

    def llm_texts(self, dataset: str, prompt_version: str, model_id: str) -> set[str]:
        """The distinct LLM-written texts stored for this dataset, prompt and model."""
        with self.db.transaction() as tx:
            rows = tx.execute(f"SELECT profile FROM {self.table} WHERE dataset=? AND prompt_version=? AND model_id=?",
                              (dataset, prompt_version, model_id)).fetchall()
        profiles = (json.loads(text) for (text,) in rows)
        return {p["text"] for p in profiles if p["source"] == "llm"}

    def profiles(self, dataset: str | None = None) -> Iterator[Profile]:
        """Every stored profile (of one dataset, when given), in key order (the database's collation)."""
        query = (f"SELECT profile FROM {self.table}" + (" WHERE dataset=?" if dataset else "")
                 + f" ORDER BY {_KEY}")
        with self.db.transaction() as tx:
            for (text,) in tx.execute(query, (dataset,) if dataset else ()):
                yield Profile.from_dict(json.loads(text))

    def __len__(self) -> int:
        with self.db.transaction() as tx:
            return int(tx.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def export(self, path: str | Path, dataset: str | None = None, writer: tuple[str, str] | None = None) -> int:
        """Write profiles (of one dataset; with `writer` = (prompt version, model id), only that writer's) as
        gzip-compressed JSON lines (atomically); returns how many."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # processes may export side by side
        count = 0
        with gzip.open(partial, "wt", encoding="utf-8") as out:
            for profile in self.profiles(dataset):
                if writer and (profile.provenance.prompt_version, profile.provenance.model_id) != writer:
                    continue
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

    def close(self) -> None:
        """Close the database connections kept open (PostgreSQL's pool, shared with the stores `beside` it)."""
        self.db.close()


def _row(profile: Profile) -> tuple:
    p = profile.provenance
    return (p.dataset, profile.user_id, p.cutoff, p.prompt_version, p.model_id, p.history_hash,
            json.dumps(profile.to_dict(), ensure_ascii=False))
