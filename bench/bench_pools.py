"""A pool's overhead per step: the same flat DAG with and without ``pool:``.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_pools.py               # ~1 minute
    python bench/bench_pools.py --steps 500   # quicker

It starts its own ``redis-server`` (``BENCH_REDIS`` names an existing one; its database 12
is flushed) and one real ``celery -A dagflow worker -c 4``. One run of ``--steps``
independent no-op steps (``test.echo``), all ready at once, per scenario:

* **no pool**: the baseline;
* **pool of 1000**: every step takes and gives back a slot, none ever waits (the cost of
  the two scripts per step);
* **pool of 4**: as many slots as worker processes: most steps are parked when they
  arrive and sent again when a slot frees (the cost of parking and waking);
* **pool of 2**: half the worker's processes, by design (the pool is the bottleneck).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
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
SIZES = {"no pool": None, "pool of 1000": 1000, "pool of 4": 4, "pool of 2": 2}


def measure(base: str, folder: Path, steps: int, reps: int) -> dict[str, list[float]]:
    url = f"{base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    pools = ",".join(f"p{size}={size}" for size in SIZES.values() if size)
    env = worker_env(url, folder / "events.jsonl", folder / "state.jsonl", DAGFLOW_POOLS=pools)
    settings = Settings.from_env(env)
    workflows.load(settings.workflow_modules)
    worker = start_worker(env, folder / "worker.log", concurrency=4)
    runner = Runner(settings)
    times: dict[str, list[float]] = {name: [] for name in SIZES}
    try:
        for rep in range(reps + 1):  # the first round warms the worker up
            for name, size in SIZES.items():
                pool = {"pool": f"p{size}"} if size else {}
                dag = make_dag([task(f"s{i}", **pool) for i in range(steps)], "pools", "A")
                started = time.perf_counter()
                result = runner.submit(dag).wait(timeout=600)
                elapsed = time.perf_counter() - started
                assert result.status == "success", result
                if rep:
                    times[name].append(elapsed)
    finally:
        runner.close(wait=False)
        stop_worker(worker, timeout=10)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the flat DAG")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median kept)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dagflow-bench-pools-"))
    try:
        times = measure(redis_base(), folder, args.steps, args.reps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = statistics.median(times["no pool"])
    print(f"\n{args.steps} no-op steps in one run, one worker -c 4, median of {args.reps}\n")
    print("| scenario | seconds | steps/s | ms per step | vs no pool |")
    print("|---|---:|---:|---:|---:|")
    for name, found in times.items():
        t = statistics.median(found)
        print(
            f"| {name} | {t:.2f} | {args.steps / t:.0f} | {1000 * t / args.steps:.2f} | "
            f"{base / t:.2f}x |"
        )


if __name__ == "__main__":
    main()
