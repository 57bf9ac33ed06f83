"""Benchmark ``dagflow metrics``: how many events per second it counts, and what a scrape costs.

Not a test: run it by hand and paste the tables into ``bench/README.md``::

    python bench/bench_metrics.py            # full sizes, about a minute
    python bench/bench_metrics.py --quick    # small sizes, a smoke run

It starts its own ``redis-server`` on a free port (``BENCH_REDIS=redis://host:port`` uses an
existing server instead; its database 13 is flushed). It measures, in this process:

1. **Counting**: N events of realistic runs (``dag_start``, a ``task_start`` and ``task_ok``
   per task with a queue wait and a duration, ``dag_done``) are appended to the stream, then
   the exporter's :class:`~dagflow.metrics.exporter.Ingester` counts them in batches of
   1,000 until the group has no backlog. Reported: events/s, and the time split between the
   pure mapping and the store's atomic apply (Lua) and read (XREADGROUP).
2. **Scraping**: the metrics hash is filled with L label sets (counters only; then histograms
   only, each with its buckets, sum and count), plus 10,000 jobs for the ``dagflow_jobs``
   gauge, and ``/metrics`` is generated (``prometheus_client.generate_latest`` over the
   exporter's registry, what the HTTP app serves) 5 times; the median is reported with the
   body's size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redis_service import redis_base  # noqa: E402

DB = 13


def _events(n_runs: int, tasks: int) -> list[dict[str, object]]:
    from dagflow.clock import now_iso

    out: list[dict[str, object]] = []
    for r in range(n_runs):
        base = {"run_id": f"run{r}", "dag_name": f"dag{r % 50}", "tenant_id": f"t{r % 5}"}
        out.append({**base, "timestamp": now_iso(), "event": "dag_start"})
        for t in range(tasks):
            task = {**base, "task_id": f"task{t}", "workflow_ref": "w", "attempt": 1}
            out.append({**task, "timestamp": now_iso(), "event": "task_start", "queue": "celery",
                        "queued_s": 0.003 * (t + 1)})  # fmt: skip
            out.append({**task, "timestamp": now_iso(), "event": "task_ok", "duration_s": 0.1 * t})
        out.append({**base, "timestamp": now_iso(), "event": "dag_done", "status": "success",
                    "duration_s": 12.5})  # fmt: skip
    return out


def bench_counting(url: str, n_events: int) -> dict[str, float]:
    from dagflow.keys import EVENTS_STREAM
    from dagflow.metrics.exporter import Ingester
    from dagflow.metrics.mapping import Buckets, updates
    from dagflow.stores.event_stream import encode
    from dagflow.stores.metrics import RedisMetricsStore

    store = RedisMetricsStore(url, name="bench")
    store.client.flushdb()
    tasks = 8
    events = _events(max(n_events // (2 * tasks + 2), 1), tasks)
    pipe = store.client.pipeline(transaction=False)
    for i, record in enumerate(events):
        pipe.xadd(EVENTS_STREAM, {"log": "events", "data": encode(record)})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    store.setup()
    ingester = Ingester(store, Buckets())
    t_read = t_map = t_apply = 0.0
    started = time.perf_counter()
    while ingester.counted < len(events):
        a = time.perf_counter()
        entries = store.read(block_ms=10)
        b = time.perf_counter()
        batch = [(e.id, [(u.op, u.field, u.amount) for u in updates(e.log, e.record or {})])
                 for e in entries]  # fmt: skip
        c = time.perf_counter()
        ingester.counted += store.apply(batch)
        d = time.perf_counter()
        t_read, t_map, t_apply = t_read + b - a, t_map + c - b, t_apply + d - c
    total = time.perf_counter() - started
    assert store.backlog() == 0
    store.close()
    n = len(events)
    return {
        "events": n,
        "seconds": total,
        "rate": n / total,
        "read_us": t_read / n * 1e6,
        "map_us": t_map / n * 1e6,
        "apply_us": t_apply / n * 1e6,
    }


def bench_scrape(url: str, label_sets: int, kind: str, jobs: int) -> dict[str, float]:
    from prometheus_client import generate_latest

    from dagflow.keys import JOBS, METRICS, job_key
    from dagflow.metrics import catalog as c
    from dagflow.metrics.exporter import registry_for
    from dagflow.metrics.mapping import Buckets, field, observe
    from dagflow.stores.metrics import RedisMetricsStore

    store = RedisMetricsStore(url, name="bench")
    store.client.flushdb()
    buckets = Buckets()
    values: dict[str, float] = {}
    for i in range(label_sets):
        dag, task = f"dag{i // 100}", f"task{i % 100}"
        if kind == "counters":
            values[field(c.TASK_ATTEMPTS.name, dag, task, "ok")] = i
        else:
            for u in observe(c.TASK_DURATION, buckets.task, (i % 50) * 0.7, dag, task):
                values[u.field] = u.amount
    items = list(values.items())
    for start in range(0, len(items), 10_000):
        store.client.hset(METRICS, mapping=dict(items[start : start + 10_000]))
    pipe = store.client.pipeline(transaction=False)
    for j in range(jobs):
        pipe.hset(job_key(f"j{j}"), mapping={"status": ("SUCCESS", "RETRY", "FAILED")[j % 3]})
        pipe.zadd(JOBS, {f"j{j}": j})
    pipe.execute()
    registry = registry_for(store, buckets)
    times, size = [], 0
    for _ in range(5):
        started = time.perf_counter()
        body = generate_latest(registry)
        times.append(time.perf_counter() - started)
        size = len(body)
    store.close()
    return {"fields": len(values), "median_ms": statistics.median(times) * 1000, "kb": size / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    args = parser.parse_args(argv)
    url = f"{redis_base()}/{DB}"
    n_events = 20_000 if args.quick else 200_000
    label_sets = 1_000 if args.quick else 10_000
    jobs = 1_000 if args.quick else 10_000
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    print(f"\nMachine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}\n")  # fmt: skip
    count = bench_counting(url, n_events)
    print("### Counting the stream (one exporter, batches of 1,000)\n")
    print("| events | seconds | events/s | read µs/event | map µs/event | apply µs/event |")
    print("|---:|---:|---:|---:|---:|---:|")
    us = f"{count['read_us']:.1f} | {count['map_us']:.1f} | {count['apply_us']:.1f}"
    print(f"| {count['events']:,.0f} | {count['seconds']:.2f} | {count['rate']:,.0f} | {us} |")
    print("\n### Scraping /metrics (median of 5)\n")
    print("| label sets | kind | hash fields | jobs | scrape ms | body kB |")
    print("|---:|---|---:|---:|---:|---:|")
    for kind in ("counters", "histograms"):
        r = bench_scrape(url, label_sets, kind, jobs)
        print(f"| {label_sets:,} | {kind} | {r['fields']:,.0f} | {jobs:,} | "
              f"{r['median_ms']:.0f} | {r['kb']:,.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
