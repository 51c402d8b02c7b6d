"""The LLM worker's contract: one thread, priority order, a bound per priority, waits that time out, a clean
close. The jobs are plain callables; `hold` keeps the worker busy until the test opens its gate."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Iterator

import pytest

from llmrec.serving.llm_worker import (BUSY, MAX_NICE, STOPPED, TIMEOUT, LLMUnavailableError, LLMWorker,
                                       Priority)
from online_fixture import hold


@pytest.fixture()
def worker() -> Iterator[LLMWorker]:
    worker = LLMWorker(capacity=2)
    yield worker
    worker.close(timeout_s=10)


def recorder(log: list[str], name: str) -> Callable[[], str]:
    def job() -> str:
        log.append(name)
        return name
    return job


def test_jobs_run_on_one_thread_interactive_ones_first(worker: LLMWorker) -> None:
    ran: list[str] = []
    threads: set[str] = set()
    gate = hold(worker)
    futures = [worker.submit(recorder(ran, "refresh-1")),
               worker.submit(recorder(ran, "explain"), Priority.INTERACTIVE),
               worker.submit(recorder(ran, "refresh-2")),
               worker.submit(lambda: threads.add(threading.current_thread().name), Priority.INTERACTIVE)]
    gate.set()
    assert [f.result(10) for f in futures[:3]] == ["refresh-1", "explain", "refresh-2"]
    futures[3].result(10)
    assert ran == ["explain", "refresh-1", "refresh-2"]
    assert threads == {"llm-worker"}


def test_each_priority_has_its_own_bound(worker: LLMWorker) -> None:
    gate = hold(worker)
    ran: list[str] = []
    for n in range(2):
        worker.submit(recorder(ran, f"background-{n}"))
    with pytest.raises(LLMUnavailableError) as refused:
        worker.submit(recorder(ran, "one too many"))
    assert refused.value.reason == BUSY
    state = worker.status()
    assert state["status"] == "degraded" and "background queue is full" in state["detail"]
    assert state["waiting"] == {"interactive": 0, "background": 2} and state["running"]
    explained = worker.submit(recorder(ran, "explain"), Priority.INTERACTIVE)  # background work takes no room
    gate.set()
    assert explained.result(10) == "explain"
    worker.close(timeout_s=10)
    assert ran == ["explain", "background-0", "background-1"]


def test_a_call_waits_at_most_its_timeout_and_an_abandoned_job_never_runs(worker: LLMWorker) -> None:
    gate = hold(worker)
    ran: list[str] = []
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as late:
        worker.call(recorder(ran, "late"), timeout_s=0.2)
    assert late.value.reason == TIMEOUT and 0.2 <= time.monotonic() - started < 5
    assert worker.status()["waiting"]["interactive"] == 0  # the abandoned job frees its place at once
    waiting = [worker.submit(recorder(ran, f"explain-{n}"), Priority.INTERACTIVE) for n in range(2)]
    with pytest.raises(LLMUnavailableError) as full:
        worker.call(recorder(ran, "refused"), timeout_s=5)
    assert full.value.reason == BUSY
    gate.set()
    assert [f.result(10) for f in waiting] == ["explain-0", "explain-1"]
    assert worker.call(recorder(ran, "next"), timeout_s=10) == "next"
    assert ran == ["explain-0", "explain-1", "next"]


def test_a_jobs_error_reaches_its_caller_and_the_worker_goes_on(worker: LLMWorker) -> None:
    def broken() -> None:
        raise RuntimeError("backend failed")

    with pytest.raises(RuntimeError, match="backend failed"):
        worker.call(broken, timeout_s=10)
    assert worker.call(lambda: 42, timeout_s=10) == 42
    assert worker.status()["status"] == "ok"


def test_close_finishes_the_queued_jobs_then_refuses_new_ones() -> None:
    worker = LLMWorker(capacity=4)
    gate = hold(worker)
    ran: list[str] = []
    queued = [worker.submit(recorder(ran, f"refresh-{n}")) for n in range(3)]
    closing = threading.Thread(target=worker.close)
    closing.start()
    gate.set()
    closing.join(10)
    assert not closing.is_alive() and [f.result(0) for f in queued] == ["refresh-0", "refresh-1", "refresh-2"]
    with pytest.raises(LLMUnavailableError) as stopped:
        worker.submit(recorder(ran, "late"))
    assert stopped.value.reason == STOPPED
    assert worker.status()["status"] == "degraded" and "stopped" in worker.status()["detail"]


def thread_niceness() -> int:
    """The calling thread's niceness (Linux: a thread id names one thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")
def test_the_worker_thread_and_the_threads_it_starts_run_nicer_than_the_rest() -> None:
    own = thread_niceness()
    if own > MAX_NICE - 5:
        pytest.skip(f"the tests run at niceness {own}: no room to go 5 steps lower")

    def niceness_of_a_thread_it_starts() -> int:  # as llama.cpp's compute threads are started
        seen: list[int] = []
        started = threading.Thread(target=lambda: seen.append(thread_niceness()))
        started.start()
        started.join()
        return seen[0]

    worker = LLMWorker(capacity=1, nice=5)
    try:
        assert worker.call(thread_niceness, timeout_s=10) == own + 5
        assert worker.call(niceness_of_a_thread_it_starts, timeout_s=10) == own + 5
    finally:
        worker.close(timeout_s=10)
    assert thread_niceness() == own  # the rest of the process keeps its priority
    with pytest.raises(ValueError, match="nice must be between 0 and 19"):
        LLMWorker(capacity=1, nice=20)
