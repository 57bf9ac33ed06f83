"""Benchmark ``map`` (dynamic fan-out) against a raw Celery ``group`` on the same worker.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_map.py            # 10,000 instances, 3 interleaved runs each (~3 min)
    python bench/bench_map.py --n 2000   # smaller

Shapes, all no-op tasks on one worker (``-c 2``, prefork), the same Redis and celeryconfig
as ``bench_core.py``:

* dagflow ``map``: list (returns N items) -> each[*] mapped over it -> sink;
* dagflow plain fan-out: root -> N plain tasks -> sink (the same width, written out);
* raw Celery ``group`` of N no-op tasks with results (the throughput baseline).

Throughput is N / wall time from submit to the end. Bytes are RESP bytes Redis received on
the benchmark database (MONITOR, one extra pass per shape), per instance / task.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import (
    Bench,
    interleaved,
    machine,
    monitored,
    start_worker,
    stop_worker,
)
from bench.bench_dags import fan_tasks, make_dag, map_tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="instances (default 10,000)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved runs of each shape")
    args = parser.parse_args(argv)
    n = args.n
    worker = start_worker(2, "map")
    try:
        bench = Bench()
        mapped = make_dag(map_tasks(n), "bench_map")
        plain = make_dag(fan_tasks(n), "bench_fan")
        shapes = {
            "dagflow map": lambda: bench.dagflow(mapped, expect=n + 3),
            "dagflow fan-out (plain tasks)": lambda: bench.dagflow(plain),
            "raw Celery group": lambda: bench.raw_group(n),
        }
        bench.raw_group(100)  # warm up both engines
        bench.dagflow(make_dag(map_tasks(100), "warm"), expect=103)
        timings = interleaved(shapes, args.reps)
        traffic = {}
        for name, fn in shapes.items():
            with monitored() as seen:
                fn()
            traffic[name] = seen.total
    finally:
        stop_worker(worker.proc)
    group_t = timings["raw Celery group"]
    assert group_t is not None
    plain_bytes = traffic["dagflow fan-out (plain tasks)"] / (n + 2)
    print(f"### map of {n:,} no-op instances vs a raw group ({datetime.now():%Y-%m-%d %H:%M})")
    print()
    print(
        "| shape | median s | tasks/s | vs raw group | bytes into Redis per task | vs plain task |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, timing in timings.items():
        if timing is None:
            print(f"| {name} | failed | | | | |")
            continue
        tasks = n + 2 if name != "raw Celery group" else n
        per = traffic[name] / tasks
        print(
            f"| {name} | {timing.median:.2f} | {n / timing.median:,.0f} | "
            f"{group_t.median / timing.median:.2f}x | {per:,.0f} | {per / plain_bytes:.2f}x |"
        )
    print()
    print(*machine(), sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
