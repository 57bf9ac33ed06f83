"""Fair sharing between tenants: how long tenant B's run waits while tenant A has a burst.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_tenants.py              # ~2 minutes
    python bench/bench_tenants.py --burst 200  # quicker

It starts its own ``redis-server`` (``BENCH_REDIS`` names an existing one; its database 12
is flushed) and one real ``celery -A dagflow worker -c 4``. Both tenants run the same DAG: a
chain of three steps that each sleep 20 ms. For each scenario tenant A submits ``--burst``
runs without waiting, then tenant B submits one run every 0.5 s and the table reports, per
B run, the **start wait** (submit to its first ``task_start``) and the **end-to-end** time
(submit to ``dag_done``):

* **B alone**: no burst (the floor);
* **A's burst, nothing configured**: the fair default
  (``DAGFLOW_TENANT_MAX_ACTIVE_RUNS`` unset: 64 runs per tenant at once);
* **A's burst, no limit**: ``DAGFLOW_TENANT_MAX_ACTIVE_RUNS=0``: every run of A starts at
  once, so its root steps fill the broker queue and B's steps queue behind all of them;
* **A's burst, A limited**: ``DAGFLOW_TENANT_LIMITS=A=<n>``: A's runs wait as ``pending``
  in dagflow, and B's steps interleave with the few runs A has active.

A second table is the price of the default for one tenant alone: ``--solo`` runs of A
submitted at once, time until the last one ends, with nothing configured and with
``DAGFLOW_TENANT_MAX_ACTIVE_RUNS=0``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_service import redis_base
from dagflow import workflows
from dagflow.client.runner import Runner
from dagflow.settings import Settings
from tests.support.dags import make_dag, task
from tests.support.processes import start_worker, stop_worker, worker_env

DB = 12
STEP_S = 0.02


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    scenario: str
    burst: int
    waiting: int  # A's runs waiting as pending when B's first run was submitted
    start_s: list[float]
    done_s: list[float]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def scenario(
    name: str, base: str, folder: Path, burst: int, b_runs: int, extra: dict[str, str]
) -> Row:
    url = f"{base}/{DB}"
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    env = worker_env(url, folder / "events.jsonl", folder / "state.jsonl", **extra)
    settings = Settings.from_env(env)
    workflows.load(settings.workflow_modules)
    worker = start_worker(env, folder / f"worker-{len(name)}.log", concurrency=4)
    runner = Runner(settings)
    try:
        tasks = [
            task("a", "test.sleep", params={"seconds": STEP_S}),
            task("b", "test.sleep", deps=("a",), params={"seconds": STEP_S}),
            task("c", "test.sleep", deps=("b",), params={"seconds": STEP_S}),
        ]
        dag_a = make_dag(tasks, "fair", "A")
        dag_b = make_dag(tasks, "fair", "B")
        burst_handles = [runner.submit(dag_a) for _ in range(burst)]
        waiting = runner.runtime.store.waiting_runs().get("A", 0)
        submitted: dict[str, float] = {}
        for _ in range(b_runs):
            at = time.time()
            submitted[runner.submit(dag_b).run_id] = at
            time.sleep(0.5)
        for run_id in submitted:
            runner.attach(run_id).wait(timeout=600)
        events = [e for e in runner.runtime.events.read() if e.get("run_id") in submitted]
        start, done = [], []
        for run_id, at in submitted.items():
            mine = [e for e in events if e["run_id"] == run_id]
            first = min(_ts(e["timestamp"]) for e in mine if e["event"] == "task_start")
            end = max(_ts(e["timestamp"]) for e in mine if e["event"] == "dag_done")
            start.append(first - at)
            done.append(end - at)
        for handle in burst_handles:
            handle.cancel()
        return Row(name, burst, waiting, start, done)
    finally:
        runner.close(wait=False)
        stop_worker(worker, timeout=10)


def solo(name: str, base: str, folder: Path, runs: int, extra: dict[str, str]) -> float:
    """Seconds from the first submit of ``runs`` runs of A alone to the end of the last."""
    url = f"{base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    env = worker_env(url, folder / "events.jsonl", folder / "state.jsonl", **extra)
    settings = Settings.from_env(env)
    workflows.load(settings.workflow_modules)
    worker = start_worker(env, folder / f"worker-solo-{len(name)}.log", concurrency=4)
    runner = Runner(settings)
    try:
        tasks = [
            task("a", "test.sleep", params={"seconds": STEP_S}),
            task("b", "test.sleep", deps=("a",), params={"seconds": STEP_S}),
            task("c", "test.sleep", deps=("b",), params={"seconds": STEP_S}),
        ]
        dag = make_dag(tasks, "solo", "A")
        started = time.perf_counter()
        handles = [runner.submit(dag) for _ in range(runs)]
        for handle in handles:
            handle.wait(timeout=600)
        return time.perf_counter() - started
    finally:
        runner.close(wait=False)
        stop_worker(worker, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=1000, help="runs tenant A submits")
    parser.add_argument("--b-runs", type=int, default=10, help="runs tenant B submits")
    parser.add_argument("--limit", type=int, default=4, help="tenant A's limit")
    parser.add_argument("--solo", type=int, default=300, help="runs of A alone (0: skip)")
    args = parser.parse_args()
    base = redis_base()
    folder = Path(tempfile.mkdtemp(prefix="dagflow-bench-tenants-"))
    try:
        off = {"DAGFLOW_TENANT_MAX_ACTIVE_RUNS": "0"}
        limited = {"DAGFLOW_TENANT_LIMITS": f"A={args.limit}"}
        rows = [
            scenario("B alone", base, folder, 0, args.b_runs, {}),
            scenario("A's burst, nothing configured", base, folder, args.burst, args.b_runs, {}),
            scenario("A's burst, no limit (=0)", base, folder, args.burst, args.b_runs, off),
            scenario(f"A's burst, A limited to {args.limit}", base, folder, args.burst,
                     args.b_runs, limited),
        ]  # fmt: skip
        solos = (
            [
                ("nothing configured (64 at once)", solo("default", base, folder, args.solo, {})),
                ("DAGFLOW_TENANT_MAX_ACTIVE_RUNS=0", solo("off", base, folder, args.solo, off)),
            ]
            if args.solo
            else []
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\nTenant B's wait (s), {args.b_runs} runs of a 3-step chain (20 ms steps), "
        "one worker -c 4\n"
    )
    print("| scenario | A runs | A pending | B start p50 | B start max | B done p50 | B done max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.burst} | {r.waiting} | {statistics.median(r.start_s):.3f} | "
            f"{max(r.start_s):.3f} | {statistics.median(r.done_s):.3f} | {max(r.done_s):.3f} |"
        )
    if solos:
        print(f"\nTenant A alone: {args.solo} runs submitted at once, until the last ends\n")
        print("| setting | seconds | runs/s | vs no limit |")
        print("|---|---:|---:|---:|")
        base_s = solos[-1][1]
        for label, seconds in solos:
            print(
                f"| {label} | {seconds:.2f} | {args.solo / seconds:.1f} | {base_s / seconds:.2f}x |"
            )


if __name__ == "__main__":
    main()
