"""A bounded local load test of the HTTP service: starts `llmrec serve` on 127.0.0.1 for a trained run, loads it,
stops it, and writes two records to bench/results/online.json:

- `http-service`: POST /recommend for random known users from `--clients` concurrent clients: rps, p50/p99,
  errors, clients, server workers (`per_worker`: the requests each answered, most first), and
  `in_process_p99_ms`, the p99 of the same call in Python (measured first, in this process, with no server
  running).
- `http-recommend-under-explain`: one client's POST /recommend latency alone (`idle_p50_ms`, `idle_p99_ms`, for
  `--probe-requests`) and while another client sends `--explanations` GET /explain one after another (`p50_ms`,
  `p99_ms`, `max_ms`), and `p99_ratio` = busy / idle: how much explanations (the LLM) slow recommendations down.

    python bench/service.py runs/demo --requests 2000 --clients 8
    python bench/service.py runs/demo --set online.explain_with_llm=true     # with the LLM explaining

The load generator runs on the same machine, in this process: one asyncio loop whose clients each keep one
keep-alive connection (aiohttp, a fraction of a millisecond of CPU per request, which the server's cores share),
named in the records (`client`). Each load stops after its request count or `--max-seconds` (default 120),
whichever comes first; the server's log is kept in <run_dir>/logs/service-bench.log.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import httpx
import numpy as np

from llmrec.pipeline import Recommender
from llmrec.service.workers import PID_HEADER

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results"
HOST = "127.0.0.1"
CLIENT = f"aiohttp {aiohttp.__version__}"

Send = Callable[[aiohttp.ClientSession, random.Random], Awaitable[int]]
"""One request of a load: (client session, the load's random generator) -> its HTTP status."""


@dataclass
class Load:
    """What one load measured."""

    latencies_ms: list[float]
    errors: int
    elapsed_s: float

    def percentile(self, q: float) -> float:
        return round(float(np.percentile(self.latencies_ms, q)), 2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_healthy(base_url: str, server: subprocess.Popen, workers: int, timeout_s: float) -> None:
    """Poll /healthz, each time on a new connection, until `workers` processes have answered 200 (a worker still
    loading is not listening, and the keep-alive connections of the loads would all go to the others); fail if the
    server exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    answered: set[str] = set()
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode} before it was healthy")
        try:
            response = httpx.get(f"{base_url}/healthz", timeout=5)
            if response.status_code == 200:
                answered.add(response.headers.get(PID_HEADER, ""))
                if len(answered) >= workers:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{len(answered)} of {workers} workers were healthy after {timeout_s:.0f}s")


async def drive(http: aiohttp.ClientSession, send: Send, requests: int, clients: int, max_seconds: float,
                seed: int, until: asyncio.Task | None = None) -> Load:
    """Send up to `requests` requests from `clients` concurrent clients until `max_seconds` pass (or `until`
    is done)."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    remaining = requests
    started = time.monotonic()
    deadline = started + max_seconds

    async def client() -> None:
        nonlocal errors, remaining
        while remaining > 0 and time.monotonic() < deadline and not (until and until.done()):
            remaining -= 1
            sent = time.perf_counter()
            try:
                ok = await send(http, rng) == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            latencies.append((time.perf_counter() - sent) * 1000)
            errors += not ok

    await asyncio.gather(*(client() for _ in range(clients)))
    return Load(latencies, errors, time.monotonic() - started)


def in_process_p99(recommender: Recommender, users: list[str], requests: int, k: int, seed: int) -> float:
    """p99 (ms) of `recommender.recommend(user, k)` for random users, after a warm-up."""
    rng = random.Random(seed)
    for user in users[:50]:
        recommender.recommend(user, k=k)
    timings = []
    for _ in range(requests):
        user = rng.choice(users)
        started = time.perf_counter()
        recommender.recommend(user, k=k)
        timings.append((time.perf_counter() - started) * 1000)
    return round(float(np.percentile(timings, 99)), 2)


def stop(server: subprocess.Popen) -> None:
    """Ask the server to shut down (SIGINT, as Ctrl-C), then kill it if it has not exited within 15 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def measure(base_url: str, users: list[str],
                  args: argparse.Namespace) -> tuple[Load, Load, Load, Load, int, list[int]]:
    """(the concurrent /recommend load, one /recommend client idle, one while /explain is looped, that /explain
    load, its answers that came back degraded, how many of the concurrent load's requests each worker answered)."""
    degraded = 0
    answered_by: Counter[str] = Counter()

    connections = aiohttp.TCPConnector(limit=args.clients + 1)
    async with aiohttp.ClientSession(base_url, connector=connections, timeout=aiohttp.ClientTimeout(30)) as http:
        async with http.post("/recommend", json={"user_id": users[0], "k": 50}) as sample:
            items = [item["item_id"] for item in (await sample.json())["items"]]

        async def recommend(http: aiohttp.ClientSession, rng: random.Random) -> int:
            async with http.post("/recommend", json={"user_id": rng.choice(users), "k": args.k}) as response:
                await response.read()
                answered_by[response.headers.get(PID_HEADER, "")] += 1
                return response.status

        async def explain(http: aiohttp.ClientSession, rng: random.Random) -> int:
            nonlocal degraded
            query = {"user_id": rng.choice(users), "item_id": rng.choice(items)}
            async with http.get("/explain", params=query) as response:
                answer = await response.json() if response.status == 200 else {}
                degraded += answer.get("degraded") is not None
                return response.status

        answered_by.clear()
        service = await drive(http, recommend, args.requests, args.clients, args.max_seconds, args.seed)
        per_worker = sorted(answered_by.values(), reverse=True)
        idle = await drive(http, recommend, args.probe_requests, 1, args.max_seconds, args.seed)
        explaining = asyncio.create_task(drive(http, explain, args.explanations, 1, args.max_seconds, args.seed))
        busy = await drive(http, recommend, sys.maxsize, 1, args.max_seconds, args.seed, until=explaining)
        explained = await explaining
    return service, idle, busy, explained, degraded, per_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained run folder (with its config.yaml)")
    parser.add_argument("--requests", type=int, default=2000, help="how many concurrent-load requests at most")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=1, help="server processes (`llmrec serve --workers`)")
    parser.add_argument("--probe-requests", type=int, default=300, help="requests of the idle one-client load")
    parser.add_argument("--explanations", type=int, default=20,
                        help="explanations asked one after another while one client sends /recommend")
    parser.add_argument("--k", type=int, default=10, help="items per recommendation")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop each load after this long")
    parser.add_argument("--startup-seconds", type=float, default=300.0, help="wait this long for /healthz")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override for the server and the in-process run, e.g. online.explain_timeout_s=2")
    parser.add_argument("--output", type=Path, default=RESULTS / "online.json", help="results file")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.monotonic()
    recommender = Recommender.load(args.run_dir, args.overrides)
    try:
        users = [str(u) for u in recommender.split.user_ids]
        dataset, seed = recommender.config.data.name, recommender.config.seed
        in_process = in_process_p99(recommender, users, args.probe_requests, args.k, args.seed)
    finally:
        recommender.close()  # before the server starts: one process at a time on the run's files
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = args.run_dir / "logs" / "service-bench.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "llmrec", "serve", "--run-dir", str(args.run_dir), "--host", HOST,
               "--port", str(port), *(["--workers", str(args.workers)] if args.workers > 1 else []),
               *(part for override in args.overrides for part in ("--set", override))]
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base_url, server, args.workers, args.startup_seconds)
            service, idle, busy, explained, degraded, per_worker = asyncio.run(measure(base_url, users, args))
        finally:
            stop(server)
    if not all(load.latencies_ms for load in (service, idle, busy, explained)):
        raise SystemExit(f"no request was answered; see {log_path}")
    ran = "python " + shlex.join(sys.argv)
    wall = time.monotonic() - started
    throughput = {"requests": len(service.latencies_ms), "errors": service.errors,
                  "rps": round(len(service.latencies_ms) / service.elapsed_s, 2), "p50_ms": service.percentile(50),
                  "p99_ms": service.percentile(99), "clients": args.clients, "workers": args.workers, "k": args.k,
                  "in_process_p99_ms": in_process, "client": CLIENT, "per_worker": per_worker}
    interference = {"requests": len(busy.latencies_ms), "errors": idle.errors + busy.errors,
                    "p50_ms": busy.percentile(50), "p99_ms": busy.percentile(99), "max_ms": busy.percentile(100),
                    "idle_p50_ms": idle.percentile(50), "idle_p99_ms": idle.percentile(99),
                    "p99_ratio": round(busy.percentile(99) / idle.percentile(99), 2),
                    "explanations": len(explained.latencies_ms), "explanation_errors": explained.errors,
                    "explanations_degraded": degraded, "explanation_p50_ms": explained.percentile(50),
                    "workers": args.workers, "client": CLIENT}
    write_records(args.output, [make_record(dataset, "http-service", throughput, ran, seed, wall),
                                make_record(dataset, "http-recommend-under-explain", interference, ran, seed, wall)])
    print(f"{dataset} http-service: {throughput}\n{dataset} http-recommend-under-explain: {interference}\n"
          f"(server log {log_path})")


if __name__ == "__main__":
    main()
