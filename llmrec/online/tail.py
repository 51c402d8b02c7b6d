"""LogTail: follow an append-only log (the event log; any log whose entries carry an increasing position) so that
every entry is applied once, in log order, whoever appended it.

    tail = LogTail(events.events_since, lambda event: event.event_id, events.db.version)
    tail.apply_new(apply_event)      # at load: every logged entry; at each request: those appended since
    tail.apply_batch(apply_changes)  # the same, all new entries in one call (work that is cheaper in batches)

With the log's `version` (`Database.version`), a tail whose log has not changed since it last read it reads
nothing: every request of a server starts by following its logs, and most find nothing new.

Several processes (`llmrec serve --workers N`, or workers on several machines sharing a PostgreSQL log) each keep
a tail of the same log, which makes the log their one source of truth.
"""

from __future__ import annotations

from typing import Callable, Generic, Sequence, TypeVar

Entry = TypeVar("Entry")
Result = TypeVar("Result")


class LogTail(Generic[Entry]):
    """The position of the last entry applied from one log. Not thread-safe: the caller serialises `apply_new`
    with whatever else reads what it applies to."""

    def __init__(self, since: Callable[[int], Sequence[Entry]], position: Callable[[Entry], int],
                 version: Callable[[], int | None] = lambda: None) -> None:
        """`since(p)` returns the entries after position `p` in log order (`p=0`: every entry); `position(entry)`
        is an entry's position, > 0; `version()` a number that changes with every commit to the log (None:
        unknown, so the log is read every time)."""
        self._since = since
        self._position = position
        self._version = version
        self._applied_version: int | None = None
        """The log's version when every entry then in it had been applied."""
        self.position = 0
        """The position of the last entry applied (0: none yet)."""

    def apply_new(self, apply: Callable[[Entry], Result]) -> list[Result]:
        """Apply each entry appended since the last one applied, in order; returns what `apply` returned. When
        `apply` raises, the entries before stay applied and the failing one is tried again next time."""
        version, entries = self._unapplied()
        results = []
        for entry in entries:
            results.append(apply(entry))
            self.position = self._position(entry)
        self._applied_version = version
        return results

    def apply_batch(self, apply: Callable[[Sequence[Entry]], Result]) -> Result:
        """Apply every entry appended since the last one applied in one call (`apply` gets them in order, maybe
        none) and return what it returned. When `apply` raises, none of them count as applied."""
        version, entries = self._unapplied()
        result = apply(entries)
        if entries:
            self.position = self._position(entries[-1])
        self._applied_version = version
        return result

    def _unapplied(self) -> tuple[int | None, Sequence[Entry]]:
        """(the log's version, read first, and the entries after the last one applied): none when the version is
        the one all entries were applied at. An entry committed after the version was read is read now or next
        time (the version has changed by then)."""
        version = self._version()
        if version is not None and version == self._applied_version:
            return version, ()
        return version, self._since(self.position)
