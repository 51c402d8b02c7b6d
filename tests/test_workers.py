"""Several processes over one run (tests/online_fixture.py): facades sharing an event log and an item log on
SQLite and on a real PostgreSQL server see each other's events and items at their next request, and `llmrec serve --workers 2` answers from
either worker with every event any worker acknowledged; on Linux each worker listens on a socket of its own, over
which the kernel spreads connections."""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from llmrec.errors import UnknownIdError
from llmrec.pipeline import Recommender
from llmrec.service.workers import PID_HEADER, ServeTarget, WorkerSocket
from online_fixture import tiny_run

START_TIMEOUT_S = 600
"""The parent and then each worker import torch and load the run (about 50 s on 2 idle cores); the machines
running the tests may be busy."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory)  # online.profile_refresh_every=3


def test_facades_sharing_an_event_log_see_each_others_events(run_dir: Path, database_location: str,
                                                             tmp_path: Path) -> None:
    overrides = [f"online.events={database_location}", f"online.items={database_location}",
                 f"profile.store={database_location}", f"online.state_dir={tmp_path / 'state'}"]
    first, second = Recommender.load(run_dir, overrides), Recommender.load(run_dir, overrides)
    try:
        with pytest.raises(UnknownIdError):
            second.recommend("walker")
        before = second.recommend("u2", k=5)
        assert first.add_interaction("walker", "i3")["history_length"] == 1
        first.add_interaction("u2", before[0].item_id)
        assert second.profile("walker")["history_length"] == 1  # a user another process created
        assert "i3" not in {r.item_id for r in second.recommend("walker", k=5)}
        after = [r.item_id for r in second.recommend("u2", k=5)]
        assert before[0].item_id not in after and after == [r.item_id for r in first.recommend("u2", k=5)]
        # profile refreshes follow the user's events in the shared log, whichever process acknowledged them
        refreshes = [second.add_interaction("walker", "i4"), second.add_interaction("walker", "i5"),
                     first.add_interaction("walker", "i6"), first.add_interaction("walker", "i7"),
                     second.add_interaction("walker", "i8")]
        assert [ack["profile_refresh"] for ack in refreshes] == [False, True, False, False, True]
        assert [ack["history_length"] for ack in refreshes] == [2, 3, 4, 5, 6]
        assert first.profile("walker")["history_length"] == 6
        # an item added through one process is recommendable, and may be interacted with, in the other at once
        first.add_item("shared-new", "a film added while serving", title="Shared New")
        everything = {r.item_id for r in second.recommend(history=["i1"], k=100)}
        assert "shared-new" in everything
        assert second.add_interaction("walker", "shared-new")["history_length"] == 7
        second.delete_item("shared-new")
        assert "shared-new" not in {r.item_id for r in first.recommend(history=["i1"], k=100)}
    finally:
        first.close()
        second.close()


def test_two_serve_workers_answer_with_every_acknowledged_event(run_dir: Path, tmp_path: Path) -> None:
    with serving(run_dir, tmp_path / "server.log", workers=2) as base_url:
        health = answers_by_worker(base_url, lambda http: http.get("/healthz"), count=2)
        assert all(response.status_code == 200 for response in health.values())
        unknown = answers_by_worker(base_url, lambda http: http.get("/profile/runner"), count=2)
        assert all(response.status_code == 404 for response in unknown.values())
        with httpx.Client(base_url=base_url, timeout=60) as http:
            ack = http.post("/events", json={"user_id": "runner", "item_id": "i3"})
        assert ack.status_code == 201, ack.text
        acknowledged_by = int(ack.headers[PID_HEADER])
        other = answers_by_worker(base_url, lambda http: http.post("/recommend", json={"user_id": "runner", "k": 5}),
                                  count=1, excluding=acknowledged_by)
        ((pid, listed),) = other.items()
        assert pid != acknowledged_by and listed.status_code == 200, listed.text
        assert len(listed.json()["items"]) == 5 and "i3" not in {item["item_id"] for item in listed.json()["items"]}


def answers_by_worker(base_url: str, request: Callable[[httpx.Client], httpx.Response], count: int,
                      excluding: int | None = None) -> dict[int, httpx.Response]:
    """The first answer of `count` distinct worker processes (by `X-Worker-PID`), other than `excluding`: the same
    request is sent on new connections, several at once, until enough workers have answered (a worker may still
    be starting when the first one is healthy)."""
    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as http:  # a new connection: any worker may take it
            return request(http)

    answers: dict[int, httpx.Response] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    with ThreadPoolExecutor(max_workers=4) as pool:
        while time.monotonic() < deadline:
            for response in pool.map(send, range(4)):
                pid = int(response.headers[PID_HEADER])
                if pid != excluding:
                    answers.setdefault(pid, response)
            if len(answers) >= count:
                return dict(list(answers.items())[:count])
            time.sleep(0.2)
    raise AssertionError(f"only workers {sorted(answers)} answered within {START_TIMEOUT_S} s (excluding {excluding})")


@contextmanager
def serving(run_dir: Path, log: Path, workers: int) -> Iterator[str]:
    """`llmrec serve` on a free local port, healthy; stopped (with its workers) afterwards, whatever happens."""
    port = free_port()
    command = [sys.executable, "-m", "llmrec", "serve", "--run-dir", str(run_dir), "--port", str(port),
               "--workers", str(workers)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process, log)
        yield base_url
    finally:
        stop(process)


def wait_until_healthy(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"llmrec serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"llmrec serve was not healthy within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn stops its workers gracefully), SIGKILL after 60 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # any worker left behind
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
def test_each_worker_unpickles_a_listening_socket_of_its_own_and_connections_spread() -> None:
    port = free_port()
    address = WorkerSocket("127.0.0.1", port)  # as uvicorn's supervisor hands it to each worker it starts
    listeners = [pickle.loads(pickle.dumps(address)) for _ in range(2)]
    clients = []
    try:
        for listener in listeners:
            assert listener.getsockname() == ("127.0.0.1", port)
            listener.listen(64)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        accepted = [0, 0]
        deadline = time.monotonic() + 10
        while sum(accepted) < len(clients) and time.monotonic() < deadline:
            ready, _, _ = select.select(listeners, [], [], 1)
            for listener in ready:
                listener.accept()[0].close()
                accepted[listeners.index(listener)] += 1
        assert sum(accepted) == 32 and min(accepted) > 0, accepted  # all on one socket: 2 in 2**32
    finally:
        for sock in [*clients, *listeners]:
            sock.close()


def test_workers_share_the_cores_among_their_llms_unless_told_otherwise() -> None:
    target = ServeTarget("runs/demo", ["online.rerank=false"])
    cores = len(os.sched_getaffinity(0))
    shared = target.sharing_cores(2, llm_threads=None)
    assert shared.overrides == ["online.rerank=false", f"llm.threads={max(1, cores // 2)}"]
    assert target.sharing_cores(cores * 4, llm_threads=None).overrides[-1] == "llm.threads=1"
    assert target.sharing_cores(2, llm_threads=3) == target  # set by the user: kept
