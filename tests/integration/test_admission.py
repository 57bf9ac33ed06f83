"""``max_active_runs`` per DAG and per tenant, and fair sharing between tenants, on real
``celery -A dagflow worker`` processes and a private redis-server.

The limits live in Redis, so they hold across clients: the runs here are submitted both
from this process and from ``dagflow run --no-wait`` in other processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from dagflow.client.runner import Runner
from dagflow.execution.admission import Slot
from dagflow.stores.queue_stats import with_collector_lag
from tests.support.cluster import Cluster
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT
from tests.support.processes import dagflow_cli as cli
from tests.support.waiting import wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: Tenant "busy" may run 2 runs at once; others are unlimited.
LIMITS = {"DAGFLOW_TENANT_LIMITS": "busy=2"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("admission"), extra_env=LIMITS)
    try:
        c.worker("a", concurrency=4)
        yield c
    finally:
        c.close()


def intervals(runner: Runner, run_ids: list[str], task_id: str = "s") -> list[tuple[float, float]]:
    """(start, end) of the sleep task of each run, in the runs' order."""
    out = []
    for run_id in run_ids:
        result = runner.runtime.store.outputs(run_id, [task_id])[task_id]
        value = json.loads(result)
        out.append((float(value["start"]), float(value["end"])))
    return out


def overlapping(spans: list[tuple[float, float]]) -> int:
    """The most spans that cover one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def sleep_dag(name: str, tenant: str = "t1", seconds: float = 0.4, **fields: Any) -> Any:
    return make_dag([task("s", "test.sleep", params={"seconds": seconds})], name, tenant, **fields)


def test_runs_over_a_dag_limit_wait_pending_and_start_in_order(cluster: Cluster) -> None:
    # Given a DAG that may run once at a time, on a worker with 4 free processes
    dag = sleep_dag("one_at_a_time", max_active_runs=1)
    # When four runs are submitted at once
    handles = [cluster.runner.submit(dag) for _ in range(4)]
    # Then the first runs and the other three wait as pending
    states = [h.status().status for h in handles[1:]]
    assert states == ["pending"] * 3
    # And all four succeed, never two at a time, in the order they were submitted
    assert all(h.wait(timeout=30).ok for h in handles)
    spans = intervals(cluster.runner, [h.run_id for h in handles])
    assert overlapping(spans) == 1
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_a_tenant_limit_holds_across_clients_in_other_processes(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given tenant "busy", limited to 2 runs at once, and its DAG in a file
    path = tmp_path / "busy.yaml"
    spec = {
        "name": "busy_dag",
        "tenant_id": "busy",
        "tasks": [{"id": "s", "workflow_ref": "test.sleep", "params": {"seconds": 0.5}}],
    }
    path.write_text(yaml.safe_dump(spec))
    # When three other processes and this one submit runs of it at the same time
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dagflow", "run", "--no-wait", str(path)],
            cwd=ROOT,
            env=cluster.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    dag = sleep_dag("busy_dag", tenant="busy", seconds=0.5)
    mine = [cluster.runner.submit(dag) for _ in range(3)]
    ids = [h.run_id for h in mine]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids.append(out.strip().split()[-1])
    # Then all six succeed, never more than two at a time
    for run_id in ids:
        assert cluster.runner.attach(run_id).wait(timeout=60).ok
    assert overlapping(intervals(cluster.runner, ids)) == 2


def test_a_cancelled_pending_run_never_starts_and_the_next_one_does(cluster: Cluster) -> None:
    # Given a DAG limited to one run, a run of it holding the slot and two waiting
    dag = sleep_dag("cancel_waiting", max_active_runs=1, seconds=3.0)
    first, second, third = (cluster.runner.submit(dag) for _ in range(3))
    assert second.status().status == "pending"
    # When the second is cancelled from another process while it waits
    proc = cli(cluster.env, "cancel", second.run_id)
    assert proc.returncode == 0, proc.stderr
    # Then it ends cancelled without ever starting, and the third runs after the first
    assert second.wait(timeout=10).status == "cancelled"
    assert first.wait(timeout=30).ok and third.wait(timeout=30).ok
    assert not [e for e in cluster.events(second.run_id) if e["event"] == "dag_start"]
    assert [e["event"] for e in cluster.events(second.run_id)] == ["task_cancel", "dag_done"]
    (_, first_end), (third_start, _) = intervals(cluster.runner, [first.run_id, third.run_id])
    assert third_start >= first_end


def test_status_says_what_a_pending_run_waits_for(cluster: Cluster) -> None:
    first = cluster.runner.submit(sleep_dag("status_waiting", max_active_runs=1, seconds=60))
    second = cluster.runner.submit(sleep_dag("status_waiting", max_active_runs=1, seconds=0.1))
    proc = cli(cluster.env, "status", second.run_id)
    assert proc.returncode == 0, proc.stderr
    assert "pending" in proc.stdout
    assert "Waiting for a slot: dag status_waiting (1 at once)" in proc.stdout
    listed = cli(cluster.env, "runs", "--status", "pending", "--json")
    assert listed.returncode == 0, listed.stderr
    assert second.run_id in listed.stdout and first.run_id not in listed.stdout
    # Cancelling the holder frees its slot at once
    first.cancel()
    assert second.wait(timeout=30).ok


def test_a_run_of_another_tenant_starts_at_once_behind_a_burst(cluster: Cluster) -> None:
    # Given tenant "busy" (2 at once) with 60 runs submitted, most of them waiting
    burst_dag = sleep_dag("burst", tenant="busy", seconds=0.3)
    burst = [cluster.runner.submit(burst_dag) for _ in range(60)]
    # When tenant "calm" submits one run
    started = time.monotonic()
    calm = cluster.runner.submit(sleep_dag("calm", tenant="calm", seconds=0.1))
    # Then it finishes within seconds, while most of the burst still waits
    assert calm.wait(timeout=10).ok
    took = time.monotonic() - started
    waiting = cluster.runner.runtime.store.waiting_runs().get("busy", 0)
    assert took < 5, took
    assert waiting > 40, waiting
    # And the dashboard's queue panel counts the burst's waiting runs
    stats = with_collector_lag(None, cluster.server.url(0))
    assert stats is not None and stats.waiting is not None
    assert stats.waiting["busy"] >= waiting - 5
    for handle in burst:
        handle.cancel()


def test_a_slot_whose_holder_vanished_is_freed_by_the_sweeper(cluster: Cluster) -> None:
    # Given a DAG limited to one run, a long run holding the slot and one waiting
    holder = cluster.runner.submit(sleep_dag("vanishing", max_active_runs=1, seconds=8.0))
    waiting = cluster.runner.submit(sleep_dag("vanishing", max_active_runs=1, seconds=0.1))
    assert waiting.status().status == "pending"
    # When the holder's state vanishes from the store (expired, flushed)
    client = redis.Redis.from_url(cluster.server.url(0))
    client.delete(*client.keys(f"dagflow:run:{{{holder.run_id}}}:*"))
    # Then the sweeper frees its slot and the waiting run runs, long before the holder's
    # step would have ended
    started = time.monotonic()
    assert waiting.wait(timeout=20).ok
    assert time.monotonic() - started < 6


def test_a_slot_is_freed_after_the_holders_worker_died(tmp_path: Path) -> None:
    # Given one worker, and a DAG limited to one run: a run holding the slot, one waiting
    c = Cluster(tmp_path)
    try:
        c.worker("a", concurrency=1)
        dag = make_dag(
            [task("s", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 2})],
            "dying_holder",
            max_active_runs=1,
        )
        holder, waiting = c.runner.submit(dag), c.runner.submit(dag)
        wait_for_file(tmp_path / "pids.txt")
        # When the holder's worker is killed mid-step and another worker starts
        c.kill("a")
        c.worker("b", concurrency=1)
        # Then the holder's step is recovered, and its slot goes to the waiting run
        assert holder.wait(timeout=30).ok
        assert waiting.wait(timeout=30).ok
        holder_done = max(
            e["timestamp"] for e in c.events(holder.run_id) if e["event"] == "dag_done"
        )
        waiting_start = min(
            e["timestamp"] for e in c.events(waiting.run_id) if e["event"] == "dag_start"
        )
        assert waiting_start >= holder_done
        assert len((tmp_path / "pids.txt").read_text().split()) == 3  # 2 attempts + 1
    finally:
        c.close()


def test_the_embedded_mode_holds_a_dag_limit_too(embedded_runner: Runner) -> None:
    dag = sleep_dag("embedded_one_at_a_time", max_active_runs=1, seconds=0.3)
    handles = [embedded_runner.submit(dag) for _ in range(3)]
    assert [h.status().status for h in handles[1:]] == ["pending", "pending"]
    assert all(h.wait(timeout=30).ok for h in handles)
    assert overlapping(intervals(embedded_runner, [h.run_id for h in handles])) == 1


def test_dagflow_run_says_its_run_waits_for_a_slot(cluster: Cluster, tmp_path: Path) -> None:
    # Given a DAG limited to one run, held by a long run
    holder = cluster.runner.submit(sleep_dag("cli_waiting", max_active_runs=1, seconds=60))
    path = tmp_path / "cli_waiting.yaml"
    spec = {
        "name": "cli_waiting",
        "tenant_id": "t1",
        "max_active_runs": 1,
        "tasks": [{"id": "s", "workflow_ref": "test.sleep", "params": {"seconds": 0.1}}],
    }
    path.write_text(yaml.safe_dump(spec))
    # When `dagflow run` submits another and gives up waiting
    proc = cli(cluster.env, "run", str(path), "--timeout", "2")
    # Then it said why nothing moved, and that the run goes on
    assert proc.returncode == 4, proc.stderr
    assert "Waiting for a slot: dag cli_waiting (1 at once)" in proc.stdout
    run_id = proc.stdout.split()[1].rstrip(":")
    assert cluster.runner.attach(run_id).status().status == "pending"
    holder.cancel()
    assert cluster.runner.attach(run_id).wait(timeout=30).ok


def test_a_run_admitted_by_a_starter_that_died_is_started_by_the_sweeper(
    cluster: Cluster,
) -> None:
    # Given a DAG limited to one run, a long run holding the slot and one waiting
    holder = cluster.runner.submit(sleep_dag("orphan_admit", max_active_runs=1, seconds=60))
    waiting = cluster.runner.submit(sleep_dag("orphan_admit", max_active_runs=1, seconds=0.1))
    store = cluster.runner.runtime.store
    # When the slot is handed to the waiting run by a process that dies before starting it
    store.release_slots(holder.run_id, [Slot("dag:orphan_admit", 1)])
    assert waiting.run_id in store.promote(10)
    assert waiting.status().status == "pending"
    # Then a worker's sweeper starts it after a lease period, once
    assert waiting.wait(timeout=20).ok
    assert [e["event"] for e in cluster.events(waiting.run_id)].count("dag_start") == 1
    holder.cancel()
