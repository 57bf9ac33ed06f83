"""Benchmark outputs passed inline (in Redis) against outputs by reference (output store).

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_outputs.py              # a chain of 100 tasks, 1 MB each, 3 runs a mode
    python bench/bench_outputs.py --mb 0.1     # smaller outputs

The DAG is a chain of ``--n`` tasks; each returns ``--mb`` MB of JSON and receives its
parent's. One worker (``-c 2``, prefork) per mode, on the same private redis-server:

* inline: ``DAGFLOW_OUTPUT_INLINE_MAX`` above the output's size: every output is a value in
  the run's ``out`` hash, read back by the child's claim;
* by reference: the default 64 KiB limit and ``DAGFLOW_OUTPUT_STORE`` on a local folder
  (``file://``): Redis keeps a ~200-byte reference, the child reads the object.

Throughput is tasks / wall time from submit to the end. Bytes into Redis are the server's
``total_net_input_bytes`` over a run (commands from every client: workers and the client),
per task; held is ``used_memory`` after the run minus before it (the run's keys, per task).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import (
    BROKER,
    Bench,
    machine,
    measure,
    start_worker,
    stop_worker,
)
from bench.bench_dags import chain_tasks, make_dag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="tasks in the chain (default 100)")
    parser.add_argument("--mb", type=float, default=1.0, help="MB each task returns (default 1)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each mode")
    args = parser.parse_args(argv)
    import redis

    dag = make_dag(chain_tasks(args.n, "bench.mb", {"mb": args.mb}), "bench_outputs")
    folder = Path(tempfile.mkdtemp(prefix="dagflow-bench-outputs-"))
    size = int(args.mb * 1_000_000) + 1000
    modes = {
        "inline (in Redis)": {"DAGFLOW_OUTPUT_INLINE_MAX": str(size * 2)},
        "by reference (file:// store)": {"DAGFLOW_OUTPUT_STORE": folder.as_uri()},
    }
    admin = redis.Redis.from_url(BROKER)
    rows = []
    for mode, env in modes.items():
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the worker and the client read them
        worker = start_worker(2, mode.split()[0])
        try:
            bench = Bench()
            bench.dagflow(make_dag(chain_tasks(5, "bench.mb", {"mb": args.mb}), "warm"))
            timing = measure(lambda b=bench: b.dagflow(dag), args.reps)  # type: ignore[misc]
            admin.flushdb()
            before_in = int(admin.info("stats")["total_net_input_bytes"])
            before_mem = int(admin.info("memory")["used_memory"])
            bench.dagflow(dag)
            into = int(admin.info("stats")["total_net_input_bytes"]) - before_in
            held = int(admin.info("memory")["used_memory"]) - before_mem
            rows.append((mode, timing, into / args.n, held / args.n))
        finally:
            stop_worker(worker.proc)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    print(
        f"### chain of {args.n} tasks passing {args.mb:g} MB outputs, inline vs by reference "
        f"({datetime.now():%Y-%m-%d %H:%M})"
    )
    print()
    print("| mode | median s | tasks/s | bytes into Redis per task | Redis memory held per task |")
    print("|---|---:|---:|---:|---:|")
    for mode, timing, into, held in rows:
        if timing is None:
            print(f"| {mode} | failed | | | |")
            continue
        print(
            f"| {mode} | {timing.median:.2f} | {args.n / timing.median:,.1f} | "
            f"{into:,.0f} | {held:,.0f} |"
        )
    print()
    print(*machine(), sep="\n")
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
