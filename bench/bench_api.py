"""The HTTP API's throughput and latency: start-run and status requests per second, p50/p99.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_api.py                 # ~1 minute
    python bench/bench_api.py --seconds 5     # quicker

It starts its own ``redis-server`` (``BENCH_REDIS`` names an existing one; its database 12
is flushed) and one real ``python -m dagflow api`` process (uvicorn, one process), with a
tenant token, and drives it from client threads in this process, each with its own
keep-alive HTTP connection:

* **start run**: ``POST /api/v1/runs`` of a one-task DAG (token check, DAG lookup, params
  check, the run stored and its first step queued in Redis). No worker runs: the runs wait
  in the queue, so the number is the API's own cost, not the workers';
* **start run (idempotent)**: the same with a fresh ``idempotency_key`` each (one more
  Redis script call);
* **status**: ``GET /api/v1/runs/{id}`` of those runs (what ``dagflow status --json`` shows).

Each operation runs for ``--seconds`` with 1 and then ``--threads`` client threads; the
table gives the requests answered, requests per second, and p50/p99 latency as the client
saw it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_service import redis_base
from dagflow.stores.tokens import RedisTokenStore
from tests.support.api_server import start_api, stop_api
from tests.support.processes import ROOT

DB = 12
DAG = "name: bench_api\ntenant_id: bench\ntasks:\n  - {id: one, workflow_ref: bench.noop}\n"


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    operation: str
    threads: int
    latencies: list[float]
    errors: int
    seconds: float


Request = Callable[[http.client.HTTPConnection, int], tuple[int, bytes]]


def _drive(
    port: int, request: Request, threads: int, seconds: float
) -> tuple[list[float], int, float]:
    """Run ``request`` from ``threads`` threads for ``seconds``; latencies and errors."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(n: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        i = 0
        barrier.wait()
        while time.monotonic() < stop_at[0]:
            start = time.perf_counter()
            status, _ = request(conn, n * 1_000_000 + i)
            mine.append(time.perf_counter() - start)
            bad += status >= 400
            i += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    barrier.wait()
    for thread in pool:
        thread.join()
    return latencies, errors, time.monotonic() - began


def _send(
    conn: http.client.HTTPConnection, method: str, path: str, token: str, body: object = None
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per operation and level")
    parser.add_argument("--threads", type=int, default=4, help="client threads (second level)")
    args = parser.parse_args(argv)

    base = redis_base()
    url = f"{base}/{DB}"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    folder = Path(tempfile.mkdtemp(prefix="dagflow-bench-api-"))
    (folder / "dags").mkdir()
    (folder / "dags" / "bench_api.yaml").write_text(DAG)
    env = dict(os.environ)
    env.update(
        DAGFLOW_BROKER_URL=url,
        DAGFLOW_WORKFLOWS="bench.bench_workflows",
        DAGFLOW_DAGS_DIR=str(folder / "dags"),
        ORCH_EVENTS_PATH=str(folder / "events.jsonl"),
        STATE_STORE_PATH=str(folder / "state.jsonl"),
        PYTHONPATH=str(ROOT),
    )
    _, token = RedisTokenStore(client).create(tenant="bench", admin=False, now=time.time())
    proc, base_url = start_api(env, folder / "api.log")
    port = int(base_url.rsplit(":", 1)[1])
    run_ids: list[str] = []
    rows: list[Row] = []
    try:

        def start(conn: http.client.HTTPConnection, n: int) -> tuple[int, bytes]:
            status, body = _send(conn, "POST", "/api/v1/runs", token, {"dag": "bench_api"})
            if status == 201:
                run_ids.append(json.loads(body)["run_id"])
            return status, body

        def start_keyed(conn: http.client.HTTPConnection, n: int) -> tuple[int, bytes]:
            body = {"dag": "bench_api", "idempotency_key": f"k-{time.monotonic_ns()}-{n}"}
            return _send(conn, "POST", "/api/v1/runs", token, body)

        def status(conn: http.client.HTTPConnection, n: int) -> tuple[int, bytes]:
            run_id = run_ids[n % len(run_ids)]
            return _send(conn, "GET", f"/api/v1/runs/{run_id}", token)

        for name, request in (
            ("start run", start),
            ("start run (idempotent)", start_keyed),
            ("status", status),
        ):
            for threads in (1, args.threads):
                latencies, errors, took = _drive(port, request, threads, args.seconds)
                rows.append(Row(name, threads, latencies, errors, took))
                print(f"[bench] {name} x{threads}: {len(latencies)} requests", file=sys.stderr)
    finally:
        stop_api(proc)
        client.flushdb()
        client.close()
        shutil.rmtree(folder, ignore_errors=True)

    cpus = os.cpu_count()
    print(f"\nMachine: {platform.machine()}, {cpus} cores, Python {platform.python_version()}; "
          f"one `dagflow api` process (uvicorn), Redis and the client threads on it; "
          f"{args.seconds:g} s per line\n")  # fmt: skip
    print("| operation | client threads | requests | req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rate = len(row.latencies) / row.seconds if row.seconds else 0.0
        print(
            f"| {row.operation} | {row.threads} | {len(row.latencies)} | {rate:,.0f} | "
            f"{_ms(row.latencies, 0.5):.1f} | {_ms(row.latencies, 0.99):.1f} | {row.errors} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
