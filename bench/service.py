"""A bounded local load test of the HTTP service: starts `llmrec serve` on 127.0.0.1 for a trained run, sends
POST /recommend for random known users from concurrent clients, stops the server, and writes requests, errors,
throughput and latency percentiles to bench/results/online.json (model `http-service`).

    python bench/service.py runs/demo --requests 2000 --clients 8

The load stops after `--requests` answers or `--max-seconds` (default 120), whichever comes first; the server's
log is kept in <run_dir>/logs/service-bench.log.
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
from pathlib import Path

import httpx
import numpy as np

from llmrec.config import load_config
from llmrec.experiment import Experiment

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_healthy(base_url: str, server: subprocess.Popen, timeout_s: float) -> None:
    """Poll /healthz until it answers 200; fail if the server exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode} before it was healthy")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the server was not healthy after {timeout_s:.0f}s")


async def load(base_url: str, users: list[str], requests: int, clients: int, k: int,
               max_seconds: float, seed: int) -> tuple[list[float], int, float]:
    """Send up to `requests` POST /recommend from `clients` concurrent clients until `max_seconds` pass;
    returns (latencies in ms of all answered requests, errors, elapsed seconds)."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    remaining = requests
    started = time.monotonic()
    deadline = started + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            body = {"user_id": rng.choice(users), "k": k}
            sent = time.perf_counter()
            try:
                response = await http.post("/recommend", json=body,
                                           timeout=max(0.1, min(30.0, deadline - time.monotonic())))
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - sent) * 1000)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies, errors, time.monotonic() - started


def stop(server: subprocess.Popen) -> None:
    """Ask the server to shut down (SIGINT, as Ctrl-C), then kill it if it has not exited within 15 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained run folder (with its config.yaml)")
    parser.add_argument("--requests", type=int, default=2000, help="how many requests at most")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--k", type=int, default=10, help="items per recommendation")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long")
    parser.add_argument("--startup-seconds", type=float, default=300.0, help="wait this long for /healthz")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    config = load_config(args.run_dir / "config.yaml")
    users = [str(u) for u in Experiment(config).split.user_ids]
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = args.run_dir / "logs" / "service-bench.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "llmrec", "serve", "--run-dir", str(args.run_dir), "--host", HOST,
               "--port", str(port)]
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base_url, server, args.startup_seconds)
            latencies, errors, elapsed = asyncio.run(load(base_url, users, args.requests, args.clients, args.k,
                                                          args.max_seconds, args.seed))
        finally:
            stop(server)
    if not latencies:
        raise SystemExit(f"no request was answered; see {log_path}")
    metrics = {"requests": len(latencies), "errors": errors, "rps": round(len(latencies) / elapsed, 2),
               "p50_ms": round(float(np.percentile(latencies, 50)), 2),
               "p99_ms": round(float(np.percentile(latencies, 99)), 2), "clients": args.clients, "k": args.k}
    record = make_record(config.data.name, "http-service", metrics, "python " + shlex.join(sys.argv),
                         config.seed, elapsed)
    write_records(RESULTS / "online.json", [record])
    print(f"{config.data.name}: {metrics['requests']} requests, {errors} errors, {metrics['rps']} req/s, "
          f"p50 {metrics['p50_ms']} ms, p99 {metrics['p99_ms']} ms (server log {log_path})")


if __name__ == "__main__":
    main()
