"""Recovery time: how long a step whose worker was killed waits before it runs again.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_recovery.py              # ~5 minutes
    python bench/bench_recovery.py --quick      # short leases only, ~1 minute

It starts its own ``redis-server`` on a free port (``BENCH_REDIS=redis://host:port`` uses an
existing server instead; database 13 of it is flushed) and real ``celery -A dagflow worker``
processes (``tests.support.processes``), each in its own session. Every repetition is a run
of one step (``test.pid_sleep``: records its pid, then sleeps) and measures, from dagflow's
event log, the time from the kill to the step's ``task_start`` with fence 2:

* **whole worker killed**: two workers (-c 1) wait; the one whose ``task_start`` (fence 1)
  shows up is SIGKILLed with its pool (``os.killpg``) after a random delay in
  ``[0, lease / 3)``; the other one takes the step over once the sweeper sees the lease
  expired. On a fresh worker the kill lands before the first heartbeat, so the lease ends
  ``lease`` after the claim and recovery is ``lease - delay`` plus the wait for the next
  sweep (plus the delivery): bounded by ``lease + sweep``. (A worker kept from the
  previous repetition renews on its own phase and may have renewed once before the kill.)
  Run with the default lease (30 s, sweep 5 s) and a short one (2 s, sweep 0.5 s, as the
  fault tests use).
* **pool process killed**: one worker (-c 2); the pool process running the step is
  SIGKILLed. The worker's main process releases the lease and Celery requeues the message
  (``task_reject_on_worker_lost``), so recovery does not wait for the lease: measured with
  the default lease, where a failed release would show up as ~30 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_service import redis_base
from dagflow import workflows
from dagflow.client.runner import Runner
from dagflow.dag.load import Dag
from dagflow.settings import Settings
from tests.support.dags import make_dag, task
from tests.support.processes import kill_worker, start_worker, stop_worker, worker_env

DB = 13
#: Extra seconds every wait gets on top of what the scenario should need.
SLACK_S = 20.0


@dataclass(frozen=True)
class Scenario:
    """One line of the table."""

    name: str
    kill: str  # "worker" or "pool"
    lease_s: float
    sweep_s: float
    reps: int


@dataclass(frozen=True)
class Sample:
    """One repetition: seconds from the kill to the second ``task_start``."""

    recovery_s: float
    delay_s: float  # from the first task_start to the kill
    same_worker: bool  # the second attempt ran on the worker that was hit
    run_status: str


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


class Bench:
    """A private Redis database, an event log and the workers of one scenario."""

    def __init__(self, base: str, tmp: Path, scenario: Scenario) -> None:
        self.tmp = tmp / scenario.name.replace(" ", "_").replace(",", "")
        self.tmp.mkdir(parents=True)
        self.scenario = scenario
        url = f"{base}/{DB}"
        self.events_path = self.tmp / "events.jsonl"
        self.env = worker_env(
            url,
            self.events_path,
            self.tmp / "state.jsonl",
            DAGFLOW_RESULT_BACKEND=url,
            DAGFLOW_LEASE_S=f"{scenario.lease_s:g}",
            DAGFLOW_SWEEP_S=f"{scenario.sweep_s:g}",
        )
        settings = Settings.from_env(self.env)
        workflows.load(settings.workflow_modules)
        self.runner = Runner(settings)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.admin = redis.Redis.from_url(url)
        self.admin.flushdb()
        self.count = 0

    def worker(self, concurrency: int = 1) -> str:
        self.count += 1
        name = f"w{self.count}"
        self.workers[name] = start_worker(
            self.env, self.tmp / f"{name}.log", concurrency=concurrency, name=f"{name}@%h"
        )
        return name

    def events(self, run_id: str) -> list[dict[str, Any]]:
        # From the event stream the workers write to (the default with a broker), as the
        # recovery tests read them; the JSONL file stays empty without a collector.
        return [e for e in self.runner.runtime.events.read() if e.get("run_id") == run_id]

    def wait_start(self, run_id: str, fence: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events(run_id):
                if e["event"] == "task_start" and e.get("fence") == fence:
                    return e
            time.sleep(0.01)
        seen = [(e["event"], e.get("fence"), e.get("worker")) for e in self.events(run_id)]
        raise TimeoutError(f"no task_start with fence {fence} after {timeout:.0f} s; saw {seen}")

    def dag(self, rep: int, seconds: float) -> tuple[Dag, Path]:
        folder = self.tmp / f"rep{rep}"
        folder.mkdir()
        victim = task("victim", "test.pid_sleep", params={"dir": str(folder), "seconds": seconds})
        return make_dag([victim, task("after", deps=("victim",))]), folder / "pids.txt"

    def close(self) -> None:
        for proc in self.workers.values():
            kill_worker(proc)
        self.workers.clear()
        self.runner.close(wait=False)
        self.admin.flushdb()
        self.admin.close()


def whole_worker_rep(b: Bench, rep: int, rng: random.Random) -> Sample:
    """Kill the whole worker running the step; the other one (already up) takes over."""
    lease = b.scenario.lease_s
    while len(b.workers) < 2:
        b.worker()
    delay = rng.uniform(0, lease / 3)
    dag, _ = b.dag(rep, seconds=delay + 1.0)
    handle = b.runner.submit(dag)
    first = b.wait_start(handle.run_id, 1, SLACK_S)
    victim = str(first["worker"]).split("@")[0]
    time.sleep(max(0.0, _ts(first) + delay - time.time()))
    killed_at = time.time()
    kill_worker(b.workers.pop(victim))
    second = b.wait_start(handle.run_id, 2, lease + b.scenario.sweep_s + SLACK_S)
    result = handle.wait(timeout=delay + SLACK_S)
    return Sample(
        _ts(second) - killed_at,
        killed_at - _ts(first),
        str(second["worker"]).split("@")[0] == victim,
        result.status,
    )


def _child_of(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(stat[1]) == parent


def pool_rep(b: Bench, rep: int, rng: random.Random) -> Sample:
    """SIGKILL the pool process running the step (only if it is a child of our worker)."""
    if not b.workers:
        b.worker(concurrency=2)
    proc = next(iter(b.workers.values()))
    delay = rng.uniform(0.1, 0.5)
    dag, pids = b.dag(rep, seconds=delay + 1.0)
    handle = b.runner.submit(dag)
    first = b.wait_start(handle.run_id, 1, SLACK_S)
    deadline = time.monotonic() + SLACK_S
    while not (pids.exists() and pids.read_text().strip()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pids} not written")
        time.sleep(0.01)
    child = int(pids.read_text().split()[0])
    if not _child_of(child, proc.pid):
        raise RuntimeError(f"pid {child} is not a pool process of worker {proc.pid}")
    time.sleep(max(0.0, _ts(first) + delay - time.time()))
    killed_at = time.time()
    os.kill(child, signal.SIGKILL)
    second = b.wait_start(handle.run_id, 2, b.scenario.lease_s + b.scenario.sweep_s + SLACK_S)
    result = handle.wait(timeout=delay + SLACK_S)
    return Sample(
        _ts(second) - killed_at,
        killed_at - _ts(first),
        second["worker"] == first["worker"],
        result.status,
    )


def run_scenario(base: str, tmp: Path, scenario: Scenario, seed: int) -> list[Sample]:
    b = Bench(base, tmp, scenario)
    rng = random.Random(seed)
    samples: list[Sample] = []
    try:
        for rep in range(scenario.reps):
            fn = whole_worker_rep if scenario.kill == "worker" else pool_rep
            s = fn(b, rep, rng)
            print(
                f"[bench] {scenario.name} #{rep + 1}: recovered in {s.recovery_s:.2f} s "
                f"(killed {s.delay_s:.2f} s after start; run {s.run_status})",
                file=sys.stderr,
            )
            samples.append(s)
    finally:
        if scenario.kill == "pool":
            for proc in b.workers.values():
                stop_worker(proc, timeout=10)
            b.workers.clear()
        b.close()
    return samples


def table(results: list[tuple[Scenario, list[Sample]]]) -> list[str]:
    out = [
        "| kill | DAGFLOW_LEASE_S | DAGFLOW_SWEEP_S | expected bound s | reps | p50 s | max s "
        "| min s | within bound | after the lease ran out: p50 / max s | 2nd attempt on "
        "| runs ended success |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for sc, samples in results:
        rec = [s.recovery_s for s in samples]
        bound = sc.lease_s + sc.sweep_s
        if sc.kill == "worker":
            expected = f"lease + sweep = {bound:g}"
            # Assumes no renewal before the kill (true on a fresh worker); a renewal on a
            # reused worker makes this larger by up to the kill delay.
            after = [s.recovery_s - (sc.lease_s - s.delay_s) for s in samples]
            after_cell = f"{statistics.median(after):.2f} / {max(after):.2f}"
        else:
            expected = f"~1 (lease released); lease + sweep = {bound:g} if not"
            after_cell = "n/a (released)"
        within = sum(r <= bound for r in rec)
        ok = sum(s.run_status == "success" for s in samples)
        same = sum(s.same_worker for s in samples)
        where = f"same worker {same}/{len(samples)}" if same else "the other worker (all)"
        out.append(
            f"| {sc.name} | {sc.lease_s:g} | {sc.sweep_s:g} | {expected} | {len(rec)} "
            f"| {statistics.median(rec):.2f} | {max(rec):.2f} | {min(rec):.2f} "
            f"| {within}/{len(rec)} | {after_cell} | {where} | {ok}/{len(samples)} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the default (30 s) lease")
    parser.add_argument("--reps", type=int, default=6, help="repetitions with short leases")
    parser.add_argument("--reps-default", type=int, default=3, help="with the 30 s lease")
    parser.add_argument("--keep", action="store_true", help="keep the logs and event logs")
    parser.add_argument("--only", choices=("worker", "pool"), help="run one kind of kill only")
    args = parser.parse_args(argv)
    scenarios = [
        Scenario("whole worker (main + pool), short lease", "worker", 2.0, 0.5, args.reps),
        Scenario("pool process, default lease", "pool", 30.0, 5.0, args.reps),
    ]
    if not args.quick:
        scenarios.insert(
            0,
            Scenario("whole worker (main + pool), default lease", "worker", 30.0, 5.0,
                     args.reps_default),
        )  # fmt: skip
    if args.only:
        scenarios = [sc for sc in scenarios if sc.kill == args.only]
    base = redis_base()
    tmp = Path(tempfile.mkdtemp(prefix="dagflow-bench-recovery-"))
    started = time.perf_counter()
    load = os.getloadavg()[0]
    try:
        results = [(sc, run_scenario(base, tmp, sc, seed=i)) for i, sc in enumerate(scenarios)]
    finally:
        if args.keep:
            print(f"[bench] logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        "Recovery time: SIGKILL -> the step's `task_start` with fence 2 (from the event log); "
        "workers prefork, `--without-mingle --without-gossip --without-heartbeat`:"
    )
    print()
    print("\n".join(table(results)))
    print()
    print(
        f"Total benchmark time: {time.perf_counter() - started:.0f} s; load average at start "
        f"{load:.2f}, at the end {os.getloadavg()[0]:.2f}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
