"""EventStore on SQLite and on a real PostgreSQL server: round trip, order, validation, reopening, threads, a
tail that never skips an event committed late, and acknowledged events surviving SIGKILL."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from llmrec.errors import ConfigError, DataError
from llmrec.online import Event, EventStore
from llmrec.online.tail import LogTail


def test_append_returns_the_stored_event(database_location: str) -> None:
    store = EventStore(database_location)
    event = store.append("  u1 ", "i7", timestamp=12.5, context={"device": "phone"})
    assert event == Event(event.event_id, "u1", "i7", 12.5, {"device": "phone"})
    assert store.history("u1") == [event]
    assert store.count() == store.count("u1") == 1 and store.count("nobody") == 0
    assert store.users() == ["u1"]


def test_timestamp_defaults_to_now(tmp_path: Path) -> None:
    before = time.time()
    event = EventStore(tmp_path / "e.sqlite").append("u", "i")
    assert before <= event.timestamp <= time.time() and event.context == {}


def test_a_sqlite_log_gets_its_folder(tmp_path: Path) -> None:
    EventStore(tmp_path / "deep" / "folder" / "events.sqlite").append("u", "i")
    assert (tmp_path / "deep" / "folder" / "events.sqlite").is_file()


def test_history_is_ordered_by_time_then_append_order(database_location: str) -> None:
    store = EventStore(database_location)
    late = store.append("u", "late", timestamp=30)
    first_tie = store.append("u", "tie-a", timestamp=20)
    second_tie = store.append("u", "tie-b", timestamp=20)
    early = store.append("u", "early", timestamp=10)
    other = store.append("other", "x", timestamp=0)
    assert [e.item_id for e in store.history("u")] == ["early", "tie-a", "tie-b", "late"]
    assert store.users() == ["other", "u"]
    assert store.events_since(first_tie.event_id) == [second_tie, early, other]
    assert store.events_since(0) == [late, first_tie, second_tie, early, other]


@pytest.mark.parametrize("user, item, timestamp, context, message", [
    ("", "i", 1.0, None, "user_id must not be empty"),
    ("   ", "i", 1.0, None, "user_id must not be empty"),
    ("u", "x" * 257, 1.0, None, "at most 256"),
    ("u\x00", "i", 1.0, None, "control characters"),
    ("u", "a\nb", 1.0, None, "control characters"),
    (7, "i", 1.0, None, "user_id must be a string"),
    ("u", "i", math.nan, None, "finite"),
    ("u", "i", math.inf, None, "finite"),
    ("u", "i", "yesterday", None, "timestamp must be a number"),
    ("u", "i", True, None, "timestamp must be a number"),
    ("u", "i", 1.0, ["a"], "context must be a mapping"),
    ("u", "i", 1.0, {"k": 3}, "must be a string"),
    ("u", "i", 1.0, {"k": {"nested": "x"}}, "must be a string"),
    ("u", "i", 1.0, {"k": "v" * 257}, "at most 256"),
    ("u", "i", 1.0, {f"k{n}": "v" for n in range(33)}, "at most 32"),
    ("u", "i", 1.0, {"": "v"}, "non-empty strings"),
])
def test_invalid_events_are_rejected_with_a_clear_message(tmp_path: Path, user, item, timestamp, context,
                                                           message) -> None:
    store = EventStore(tmp_path / "e.sqlite")
    with pytest.raises(DataError, match=message):
        store.append(user, item, timestamp, context)
    assert store.count() == 0


def test_limits_are_inclusive(database_location: str) -> None:
    store = EventStore(database_location)
    context = {f"k{n}": "v" * 256 for n in range(32)}
    event = store.append("u" * 256, "é-unicode ok", 0, context)
    assert store.history("u" * 256)[0].context == context == event.context


def test_events_survive_reopening(database_location: str) -> None:
    written = [EventStore(database_location).append("u", f"i{n}", timestamp=n) for n in range(5)]
    reopened = EventStore(database_location)
    assert reopened.history("u") == written
    assert reopened.append("u", "next", timestamp=9).event_id == written[-1].event_id + 1


def append_from_threads(store: EventStore, threads: int = 4, each: int = 25) -> list[threading.Thread]:
    """Started threads, each appending `each` events of its own user."""
    def write(user: str) -> None:
        for n in range(each):
            store.append(user, f"i{n}", timestamp=n)

    started = [threading.Thread(target=write, args=(f"u{t}",)) for t in range(threads)]
    for thread in started:
        thread.start()
    return started


def test_appends_from_several_threads_are_all_kept(database_location: str) -> None:
    store = EventStore(database_location)
    for thread in append_from_threads(store):
        thread.join()
    assert store.count() == 100 and len({e.event_id for e in store.events_since(0)}) == 100
    assert all(store.count(f"u{t}") == 25 for t in range(4))


def test_a_tail_never_skips_an_event_that_commits_late(database_location: str) -> None:
    """Ids commit in order, so a reader following the log by id while others append sees every event once."""
    store = EventStore(database_location)
    tail = LogTail(store.events_since, lambda event: event.event_id)
    seen: list[Event] = []
    writers = append_from_threads(store, threads=6, each=40)
    while any(thread.is_alive() for thread in writers):
        tail.apply_new(seen.append)
    tail.apply_new(seen.append)
    ids = [event.event_id for event in seen]
    assert ids == sorted(set(ids)) and len(ids) == store.count() == 240


@pytest.mark.parametrize("versioned", [False, True])
def test_a_tail_retries_the_entry_whose_application_failed(tmp_path: Path, versioned: bool) -> None:
    store = EventStore(tmp_path / "e.sqlite")
    first, second = store.append("u", "a"), store.append("u", "b")
    version = store.db.version if versioned else lambda: None
    tail = LogTail(store.events_since, lambda event: event.event_id, version)
    applied: list[Event] = []

    def fail_on_b(event: Event) -> None:
        if event.item_id == "b":
            raise RuntimeError("b failed")
        applied.append(event)

    with pytest.raises(RuntimeError, match="b failed"):
        tail.apply_new(fail_on_b)
    assert applied == [first] and tail.position == first.event_id
    assert tail.apply_new(lambda event: event) == [second] and tail.apply_new(lambda event: event) == []


def test_a_tail_with_the_log_version_reads_only_after_a_commit(tmp_path: Path) -> None:
    """`Database.version` moves with every commit, by this process (another store on the file) or another one,
    and a tail whose log has not moved reads nothing."""
    path = tmp_path / "e.sqlite"
    store, other = EventStore(path), EventStore(path)
    reads: list[int] = []

    def since(position: int) -> list[Event]:
        reads.append(position)
        return store.events_since(position)

    tail = LogTail(since, lambda event: event.event_id, store.db.version)
    first = store.append("u", "a")
    assert tail.apply_new(lambda event: event) == [first] and reads == [0]
    assert tail.apply_new(lambda event: event) == [] and reads == [0]
    second = other.append("u", "b")
    assert tail.apply_batch(list) == [second] and reads == [0, first.event_id]
    subprocess.run([sys.executable, "-c", f"from llmrec.online import EventStore; EventStore({str(path)!r})"
                                          ".append('u', 'c')"], check=True)
    assert [event.item_id for event in tail.apply_new(lambda event: event)] == ["c"]
    assert tail.apply_new(lambda event: event) == [] and len(reads) == 3
    store.close()
    other.close()


@pytest.mark.parametrize("location, message", [
    ("postgressql://db.example/llmrec", "unsupported database URL 'postgressql://db.example/llmrec'"),
    ("mysql://user:secret@db.example/llmrec", "mysql://user:\\*\\*\\*@db.example"),
    ("postgresql://llmrec:secret@127.0.0.1:1/llmrec", "cannot connect to PostgreSQL at "
                                                       "postgresql://llmrec:\\*\\*\\*@127.0.0.1:1/llmrec"),
])
def test_a_log_that_cannot_be_opened_is_a_clear_error(location: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        EventStore(location)
    assert "secret" not in str(raised.value)


def test_acknowledged_events_survive_sigkill(database_location: str) -> None:
    writer = textwrap.dedent(f"""
        import itertools
        from llmrec.online import EventStore
        store = EventStore({database_location!r})
        for n in itertools.count():
            print(store.append("u", f"i{{n}}", timestamp=n).event_id, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        acknowledged = [int(process.stdout.readline()) for _ in range(20)]
    finally:
        process.send_signal(signal.SIGKILL)
        rest, _ = process.communicate(timeout=30)
    acknowledged += [int(line) for line in rest.splitlines(keepends=True) if line.endswith("\n")]
    assert process.returncode == -signal.SIGKILL
    stored = {event.event_id for event in EventStore(database_location).history("u")}
    assert set(acknowledged) <= stored, f"lost acknowledged events: {sorted(set(acknowledged) - stored)}"
