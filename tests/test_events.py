"""EventStore: round trip, order, validation, reopening, threads, and acknowledged events surviving SIGKILL."""

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

from llmrec.errors import DataError
from llmrec.online import Event, EventStore


def test_append_returns_the_stored_event(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "deep" / "folder" / "events.sqlite")
    event = store.append("  u1 ", "i7", timestamp=12.5, context={"device": "phone"})
    assert event == Event(event.event_id, "u1", "i7", 12.5, {"device": "phone"})
    assert store.history("u1") == [event]
    assert store.count() == store.count("u1") == 1 and store.count("nobody") == 0
    assert store.users() == ["u1"]


def test_timestamp_defaults_to_now(tmp_path: Path) -> None:
    before = time.time()
    event = EventStore(tmp_path / "e.sqlite").append("u", "i")
    assert before <= event.timestamp <= time.time() and event.context == {}


def test_history_is_ordered_by_time_then_append_order(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.sqlite")
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


def test_limits_are_inclusive(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.sqlite")
    context = {f"k{n}": "v" * 256 for n in range(32)}
    event = store.append("u" * 256, "é-unicode ok", 0, context)
    assert store.history("u" * 256)[0].context == context == event.context


def test_events_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    written = [EventStore(path).append("u", f"i{n}", timestamp=n) for n in range(5)]
    reopened = EventStore(path)
    assert reopened.history("u") == written
    assert reopened.append("u", "next", timestamp=9).event_id == written[-1].event_id + 1


def test_appends_from_several_threads_are_all_kept(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.sqlite")

    def write(user: str) -> None:
        for n in range(25):
            store.append(user, f"i{n}", timestamp=n)

    threads = [threading.Thread(target=write, args=(f"u{t}",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 100 and len({e.event_id for e in store.events_since(0)}) == 100
    assert all(store.count(f"u{t}") == 25 for t in range(4))


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    writer = textwrap.dedent(f"""
        import itertools
        from llmrec.online import EventStore
        store = EventStore({str(path)!r})
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
    stored = {event.event_id for event in EventStore(path).history("u")}
    assert set(acknowledged) <= stored, f"lost acknowledged events: {sorted(set(acknowledged) - stored)}"
