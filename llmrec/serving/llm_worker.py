"""LLMWorker: the one thread of a serving process that runs LLM work, so that no request waits on the LLM.

    worker = LLMWorker(capacity=8)
    text = worker.call(lambda: explainer.explain(...), timeout_s=5.0)   # a request waits at most 5 s
    worker.submit(lambda: rewrite_profile(user))                        # background: nobody waits
    worker.close()                                                      # finishes what is queued

Jobs run one at a time, in priority order (`INTERACTIVE` before `BACKGROUND`, first come first served within
one), on a single thread: the LLM backends hold one model and are used from that thread only. Each priority
has its own bound of `capacity` waiting jobs, so background work (profile refreshes, summaries) can never take
the room of an explanation that a request waits for. A job that cannot be queued, or that a caller stopped
waiting for, raises `LLMUnavailableError` with the reason (`llm-busy`, `llm-timeout`, `llm-stopped`); the caller
serves its non-LLM answer instead. A running job is not interrupted (a thread cannot be): its result is dropped
when its caller has stopped waiting, and the backends bound each generation themselves (`max_tokens`, HTTP
timeouts).

The thread runs `nice` steps below the process's other threads (Linux; `online.llm_nice`), and so do the threads
it starts, llama.cpp's compute threads among them (the model loads and runs on this thread): when requests and
the LLM want the same cores, the requests get them, and the LLM uses what they leave.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import sys
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Literal, TypeVar

from llmrec.errors import LlmrecError

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY = "llm-busy"
"""The queue of the job's priority was full."""
TIMEOUT = "llm-timeout"
"""The caller's wait ran out before the job finished."""
STOPPED = "llm-stopped"
"""The worker was closed, or its thread died."""


MAX_NICE = 19
"""The lowest scheduling priority a thread can have (Linux niceness)."""


def lower_thread_priority(steps: int) -> None:
    """Raise the calling thread's niceness by `steps` (up to MAX_NICE); threads it starts afterwards inherit it.
    Linux only: there a thread id names one thread, while elsewhere `setpriority` would renice the whole process,
    so other systems keep the priority (with a log line)."""
    if not steps:
        return
    if sys.platform != "linux":
        log.info("thread %s keeps its priority: per-thread niceness needs Linux", threading.current_thread().name)
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, thread) + steps))
    except OSError as exc:
        log.warning("thread %s keeps its priority: %s", threading.current_thread().name, exc)


class Priority(IntEnum):
    """Which jobs run first: lower values first."""

    INTERACTIVE = 0
    """A request waits for the result (an explanation)."""
    BACKGROUND = 1
    """Nobody waits (a profile refresh, an interest summary)."""


class LLMUnavailableError(LlmrecError):
    """The LLM could not do a job in time; `reason` is BUSY, TIMEOUT or STOPPED."""

    def __init__(self, reason: Literal["llm-busy", "llm-timeout", "llm-stopped"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(order=True)
class _Job:
    priority: Priority
    order: int
    run: Callable[[], Any] = field(compare=False)
    future: Future = field(compare=False)


class LLMWorker:
    """A single background thread with a bounded priority queue of jobs (callables); see the module docstring."""

    def __init__(self, capacity: int, name: str = "llm-worker", nice: int = 0) -> None:
        """`capacity` waiting jobs per priority; the thread's niceness is raised by `nice` (0 to 19)."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if not 0 <= nice <= MAX_NICE:
            raise ValueError(f"nice must be between 0 and {MAX_NICE}, got {nice}")
        self.capacity = capacity
        self.nice = nice
        self._jobs: list[_Job] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._running: _Job | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T], priority: Priority = Priority.BACKGROUND) -> Future[T]:
        """Queue `job` and return its future at once; LLMUnavailableError (BUSY) when `capacity` jobs of this
        priority are waiting already, (STOPPED) when the worker is closed or dead."""
        future: Future[T] = Future()
        with self._changed:
            if self._closed or not self._thread.is_alive():
                raise LLMUnavailableError(STOPPED, "the LLM worker has stopped")
            if self._waiting(priority) >= self.capacity:
                raise LLMUnavailableError(BUSY, f"{self.capacity} {priority.name.lower()} LLM jobs are waiting")
            heapq.heappush(self._jobs, _Job(priority, next(self._order), job, future))
            self._changed.notify()
        return future

    def call(self, job: Callable[[], T], timeout_s: float) -> T:
        """Run `job` ahead of background work and return its result, waiting at most `timeout_s` seconds;
        LLMUnavailableError when it cannot be queued or does not finish in time (a job that has not started by
        then never runs). The job's own exceptions propagate."""
        future = self.submit(job, Priority.INTERACTIVE)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise LLMUnavailableError(TIMEOUT, f"the LLM did not answer within {timeout_s:g} s") from None

    def status(self) -> dict[str, Any]:
        """`ok`, or `degraded` with the reason (a full queue, a stopped worker); and the queue's state."""
        with self._changed:
            waiting = {p.name.lower(): self._waiting(p) for p in Priority}
            running = self._running is not None
            alive = self._thread.is_alive() and not self._closed
        full = [name for name, count in waiting.items() if count >= self.capacity]
        detail = "the LLM worker has stopped" if not alive else (
            f"the {' and '.join(full)} queue is full" if full else None)
        return {"status": "degraded" if detail else "ok", "detail": detail, "waiting": waiting,
                "capacity": self.capacity, "running": running}

    def close(self, timeout_s: float | None = None) -> None:
        """Accept no more jobs, finish the queued ones and stop the thread (waiting at most `timeout_s`)."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout_s)

    def _waiting(self, priority: Priority) -> int:
        """Jobs of `priority` queued and still wanted (a caller that stopped waiting cancelled its job)."""
        return sum(1 for job in self._jobs if job.priority == priority and not job.future.cancelled())

    def _work(self) -> None:
        lower_thread_priority(self.nice)
        while True:
            with self._changed:
                while not self._jobs and not self._closed:
                    self._changed.wait()
                if not self._jobs:
                    return
                job = self._running = heapq.heappop(self._jobs)
            try:
                if job.future.set_running_or_notify_cancel():
                    try:
                        job.future.set_result(job.run())
                    except Exception as exc:  # the job's error belongs to whoever reads its future
                        job.future.set_exception(exc)
            finally:
                with self._changed:
                    self._running = None
