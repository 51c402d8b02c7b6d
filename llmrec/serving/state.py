"""ServingState: the folder a served bundle writes to, so that the bundle's own files stay as exported.

    state/events.sqlite        the event log (unless `online.events` names another file)
    state/items.sqlite         the item log: items added, changed and deleted while serving (unless `online.items`
                               names another file)
    state/profiles.sqlite      long-term profiles and (table `summaries`) interest summaries, seeded from the
                               bundle, then rewritten by profile refreshes
    state/index-<digest>/      the working copy of the bundle's ChromaDB collection (Chroma writes to its folder
                               whenever it opens it), one folder per version of the bundle
    state/seeded.json          which bundle files the state was seeded from (their SHA-256)

Seeding runs once per bundle version, under a file lock, so several server processes can start on one state
folder together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from filelock import FileLock

_SEEDED = "seeded.json"


class ServingState:
    """The mutable side of a served bundle, in `folder` (created when missing)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.folder / ".seed.lock"))

    @property
    def events(self) -> Path:
        """The default event log."""
        return self.folder / "events.sqlite"

    @property
    def items(self) -> Path:
        """The default item log."""
        return self.folder / "items.sqlite"

    def index(self, version: str) -> Path:
        """The working copy of one version of the bundle's ChromaDB index (`version`: its digest). Each version
        gets its own folder: Chroma caches an open database per path for the life of the process, so a copy
        replacing the files under an opened path would be read through a stale cache."""
        return self.folder / f"index-{version[:12]}"

    def seed(self, key: str, digest: str, fill: Callable[[], None]) -> None:
        """Run `fill` (which copies something from the bundle into this folder) unless the state was already
        seeded under `key` from a source with this `digest`."""
        with self._lock:
            path = self.folder / _SEEDED
            seeded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            if seeded.get(key) == digest:
                return
            fill()
            seeded[key] = digest
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(seeded, indent=2), encoding="utf-8")
            partial.replace(path)
