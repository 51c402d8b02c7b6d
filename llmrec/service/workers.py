"""Serving one run from several worker processes (`llmrec serve --workers N`).

uvicorn starts each worker as a fresh process that imports the app factory `WORKER_APP` and calls it; the factory
reads what to serve from the environment the parent set (`ServeTarget`), so every worker loads its own
`Recommender` over the same run. The workers share the run's event log and profile stores: an event one worker
acknowledges is applied by every other worker at the start of its next request (`Recommender.catch_up`). Every
response says which process answered in its `X-Worker-PID` header.

On Linux each worker listens on a socket of its own, all bound to the one port (`SO_REUSEPORT`), and the kernel
spreads new connections over them. With one socket shared by every worker (uvicorn's way, kept elsewhere), the
first worker to wake accepts every connection waiting: on an idle machine a burst of keep-alive clients all land
on one worker, whose peers then idle for as long as the connections last.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator, Callable

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.supervisors import Multiprocess

from llmrec.errors import ConfigError

WORKER_APP = "llmrec.service.workers:worker_app"
"""The import string of the app factory uvicorn calls in each worker process."""
ENVIRONMENT_KEY = "LLMREC_SERVE"
HEALTHCHECK_TIMEOUT_S = 120
"""uvicorn restarts a worker that does not answer its supervisor's ping within this time (its default, 5 s, is
shorter than loading a run can hold the interpreter on a busy machine)."""
PID_HEADER = "X-Worker-PID"


@dataclass(frozen=True)
class ServeTarget:
    """What every worker serves: the arguments of `Recommender.load`."""

    run_dir: str
    overrides: list[str] = field(default_factory=list)
    adapter: str | None = None

    def export(self) -> None:
        """Put this target in the environment, which the worker processes inherit."""
        os.environ[ENVIRONMENT_KEY] = json.dumps(asdict(self))

    def sharing_cores(self, workers: int, llm_threads: int | None) -> "ServeTarget":
        """This target for one of `workers` processes: where `llm.threads` is unset (all usable cores), each
        worker's LLM gets its share of the cores, so N llama.cpp instances do not each spin on every core."""
        if llm_threads is not None:
            return self
        share = max(1, len(os.sched_getaffinity(0)) // workers)
        return ServeTarget(self.run_dir, [*self.overrides, f"llm.threads={share}"], self.adapter)

    @classmethod
    def from_environment(cls) -> "ServeTarget":
        """The target the parent process exported; ConfigError when there is none."""
        text = os.environ.get(ENVIRONMENT_KEY)
        if not text:
            raise ConfigError(f"{ENVIRONMENT_KEY} is not set: start worker processes with `llmrec serve --workers N`")
        return cls(**json.loads(text))


def worker_app() -> FastAPI:
    """The app of one worker process: the exported target's `Recommender`, closed (background profile refreshes
    finished) when the worker shuts down."""
    from llmrec.pipeline import Recommender
    from llmrec.service.app import create_app

    target = ServeTarget.from_environment()
    recommender = Recommender.load(target.run_dir, target.overrides, adapter=target.adapter)
    app = create_app(recommender)

    @asynccontextmanager
    async def closing(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            recommender.close()

    app.router.lifespan_context = closing
    return app


def run_workers(workers: int, host: str, port: int) -> None:
    """Serve the exported `ServeTarget` from `workers` processes on host:port under uvicorn's supervisor (which
    restarts a worker that dies), each with a listening socket of its own on Linux (see the module docstring)."""
    config = uvicorn.Config(WORKER_APP, factory=True, workers=workers, host=host, port=port, log_config=None,
                            timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S)
    shared = config.bind_socket()  # says where it listens; a taken port ends the server here with uvicorn's message
    if sys.platform != "linux":  # elsewhere SO_REUSEPORT does not spread connections
        Multiprocess(config, sockets=[shared]).run()
        return
    shared.close()  # bound without SO_REUSEPORT, it was refused if any server held the port; workers bind their own
    Multiprocess(config, sockets=[WorkerSocket(host, port)]).run()  # type: ignore[list-item]


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, so that every worker can bind one of its own."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


@dataclass(frozen=True)
class WorkerSocket:
    """Where to listen, in the socket list uvicorn's supervisor hands to every worker process it starts (or
    restarts): it reaches the worker pickled, and unpickles there as `listening_socket(host, port)`, a socket of
    that worker's own."""

    host: str
    port: int

    def __reduce__(self) -> tuple[Callable[..., socket.socket], tuple[Any, ...]]:
        return listening_socket, (self.host, self.port)


class WorkerPid:
    """ASGI middleware: the `X-Worker-PID` header, the id of the process that answered, on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (PID_HEADER.lower().encode(), str(os.getpid()).encode())

        async def send_with_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_pid)
