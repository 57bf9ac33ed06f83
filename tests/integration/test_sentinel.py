"""The primary Redis dies mid-DAG; Sentinel promotes its replica; the run finishes correctly.

Broker, result backend, run store and event stream are one ``sentinel://`` URL, under a
master name that is not the default, so any dagflow client that forgot the name (or opened
the URL some other way) fails here. Workers are real ``celery -A dagflow worker``
processes; the primary, its replica and three sentinels are private processes of the test
(:mod:`tests.support.sentinel`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dagflow import workflows
from dagflow.client.runner import Runner
from dagflow.dag.load import Dag
from dagflow.execution.publish import link_push
from dagflow.settings import Settings
from tests.support.cluster import count
from tests.support.dags import make_dag, task
from tests.support.processes import start_worker, stop_worker, worker_env
from tests.support.redis_server import redis_server_binary
from tests.support.sentinel import SentinelCluster, cut_replication, sentinel_binary
from tests.support.services import require
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

#: Not Redis's sample name: a client that ignores DAGFLOW_REDIS_MASTER_NAME finds nothing.
MASTER_NAME = "dagflow-test"
TASKS = ("a", "b", "c", "d", "e", "f")


@dataclass
class Deployment:
    """The Sentinel cluster, two workers and a runner, all on the cluster's URL."""

    cluster: SentinelCluster
    runner: Runner
    workers: list[subprocess.Popen[bytes]]
    root: Path

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return [e for e in self.runner.runtime.events.read() if e.get("run_id") == run_id]

    def logs(self) -> str:
        return "\n".join(
            (self.root / f"worker-{n}.log").read_text(errors="replace")[-3000:]
            for n in range(len(self.workers))
        )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require(redis_server_binary() is not None, "redis-server is not installed")
    require(
        sentinel_binary() is not None, "redis-sentinel is not installed (Debian redis-sentinel)"
    )
    cluster = SentinelCluster.start(tmp_path / "redis", MASTER_NAME)
    workers: list[subprocess.Popen[bytes]] = []
    runner: Runner | None = None
    try:
        env = worker_env(
            cluster.url(0),
            tmp_path / "events.jsonl",
            tmp_path / "state.jsonl",
            DAGFLOW_RESULT_BACKEND=cluster.url(0),
            DAGFLOW_REDIS_MASTER_NAME=MASTER_NAME,
            DAGFLOW_LEASE_S="2",
            DAGFLOW_SWEEP_S="0.5",
            DAGFLOW_STORE_RETRY_S="30",
        )

        for n in range(2):
            workers.append(
                start_worker(env, tmp_path / f"worker-{n}.log", concurrency=2, name=f"s{n}@%h")
            )
        settings = Settings.from_env(env)
        workflows.load(settings.workflow_modules)
        runner = Runner(settings)
        yield Deployment(cluster, runner, workers, tmp_path)
    finally:
        for proc in workers:
            stop_worker(proc, timeout=5)
        if runner is not None:
            runner.close(wait=False)
        cluster.stop()


def diamond(trace: Path) -> Dag:
    """a -> (b, c) -> d (join) -> e -> f: sleeps, a join and payload passing."""
    return make_dag(
        [
            task("a", "test.sleep", params={"seconds": 0.5}),
            task("b", "test.pid_sleep", deps=("a",), params={"dir": str(trace), "seconds": 1.0}),
            task("c", "test.pid_sleep", deps=("a",), params={"dir": str(trace), "seconds": 1.0}),
            task("d", deps=("b", "c"), params={"tag": "join"}),
            task("e", "test.sleep", deps=("d",), params={"seconds": 0.5}),
            task("f", deps=("e",)),
        ],
        name="sentinel_diamond",
    )


def check_outputs(outputs: dict[str, Any]) -> None:
    """Each task's output is there, and each dependent got its parents' outputs."""
    assert set(outputs) == set(TASKS)
    joined = outputs["d"]["params"]
    assert joined["tag"] == "join"
    assert joined["b__pid"] == outputs["b"]["pid"] and joined["c__pid"] == outputs["c"]["pid"]
    assert outputs["f"]["params"]["e__end"] == outputs["e"]["end"]


def test_a_run_rides_out_a_sentinel_failover(deployment: Deployment, tmp_path: Path) -> None:
    runner, cluster = deployment.runner, deployment.cluster
    # (the fast path is in play: a finish pushes its children's messages itself)
    assert link_push(runner.app, runner.runtime.store, "r", ["x"], "d") is not None

    # Given the time the DAG takes with a healthy primary
    base_trace = tmp_path / "baseline"
    base_trace.mkdir()
    started = time.monotonic()
    baseline = runner.submit(diamond(base_trace)).wait(timeout=30)
    baseline_s = time.monotonic() - started
    assert baseline.status == "success", baseline

    # When the primary is SIGKILLed while b and c run
    trace = tmp_path / "failover"
    trace.mkdir()
    started = time.monotonic()
    handle = runner.submit(diamond(trace))
    wait_for(
        lambda: (
            (trace / "pids.txt").exists() and len((trace / "pids.txt").read_text().split()) >= 2
        ),
        20,
        "b and c started",
    )
    old_primary = cluster.master_port()
    cluster.kill_primary()
    killed = time.monotonic()
    promoted_s = cluster.wait_promoted(timeout=30)
    assert cluster.master_port() == cluster.replica.port != old_primary

    # Then Sentinel's promotion is followed by every client and the run succeeds
    try:
        result = handle.wait(timeout=45)
    except Exception:
        print(deployment.logs())
        raise
    run_s = time.monotonic() - started
    assert (result.status, result.succeeded, result.failed) == ("success", len(TASKS), 0), (
        f"{result}\n{deployment.logs()}"
    )
    check_outputs(handle.outputs())
    # each task committed once (a lost commit would show as a second task_ok or none)
    events = deployment.events(handle.run_id)
    assert {t: count(events, "task_ok", t) for t in TASKS} == dict.fromkeys(TASKS, 1), events
    assert count(events, "dag_done") == 1
    # no worker process exited
    assert [proc.poll() for proc in deployment.workers] == [None, None], deployment.logs()

    after_kill_s = time.monotonic() - killed
    runs_of_b_c = len((trace / "pids.txt").read_text().split())
    print(
        f"\nsentinel failover: promoted {promoted_s:.2f} s after the kill; run {run_s:.2f} s "
        f"vs {baseline_s:.2f} s without a failure (cost {run_s - baseline_s:.2f} s); run ended "
        f"{after_kill_s:.2f} s after the kill; b and c started {runs_of_b_c} times in all "
        "(2: both ran on through the failover; more: a lease ran out during it)"
    )


def runs(trace: Path) -> int:
    """How many times the ``test.pid_sleep`` tasks tracing into ``trace`` started."""
    path = trace / "pids.txt"
    return len(path.read_text().split()) if path.exists() else 0


def test_a_promotion_that_loses_acknowledged_writes_costs_reruns_not_the_run(
    deployment: Deployment, tmp_path: Path
) -> None:
    runner, cluster = deployment.runner, deployment.cluster
    traces = {t: tmp_path / t for t in ("b", "c")}
    for path in traces.values():
        path.mkdir()
    dag = make_dag(
        [
            task("a", "test.sleep", params={"seconds": 0.2}),
            task(
                "b", "test.pid_sleep", deps=("a",), params={"dir": str(traces["b"]), "seconds": 1.0}
            ),
            task(
                "c", "test.pid_sleep", deps=("b",), params={"dir": str(traces["c"]), "seconds": 2.0}
            ),
        ],
        name="sentinel_lost_writes",
    )
    started = time.monotonic()
    handle = runner.submit(dag)
    # Given b running, its claim replicated, and then the replica cut off from the primary
    wait_for(lambda: runs(traces["b"]) >= 1, 20, "b started")
    cut_replication(cluster)
    # ... while the primary acknowledges b's task_ok (and c's claim: c starts)
    wait_for(lambda: runs(traces["c"]) >= 1, 20, "c started")
    primary = cluster.primary.client()
    key = f"dagflow:run:{{{handle.run_id}}}:states"
    assert primary.hget(key, "b") == b"ok"
    primary.close()
    # When the primary dies and Sentinel promotes the replica that never saw those writes
    cluster.kill_primary()
    promoted_s = cluster.wait_promoted(timeout=30)
    # Then the run still succeeds with every output, at the cost of running b and c again
    result = handle.wait(timeout=45)
    run_s = time.monotonic() - started
    assert (result.status, result.succeeded) == ("success", 3), f"{result}\n{deployment.logs()}"
    outputs = handle.outputs()
    assert outputs["c"]["pid"] and outputs["b"]["pid"]
    events = deployment.events(handle.run_id)
    oks = {t: count(events, "task_ok", t) for t in ("a", "b", "c")}
    # b's first task_ok was lost with the primary: its lease expired on the new primary and
    # the sweeper ran it again; the stream kept one task_ok per task (the lost one went too)
    assert runs(traces["b"]) == 2
    assert oks == {"a": 1, "b": 1, "c": 1}, events
    assert [proc.poll() for proc in deployment.workers] == [None, None], deployment.logs()
    print(
        f"\nlost acknowledged writes: promoted {promoted_s:.2f} s after the kill; run took "
        f"{run_s:.2f} s; b started {runs(traces['b'])} times, c {runs(traces['c'])} times; "
        f"task_ok lines kept by the new primary: {oks}"
    )
