"""Recovery: killing any one process, restarting Redis or cutting a connection loses and
doubles nothing. Real workers, a private redis-server per test, bounded waits.

The faults that matter on both brokers also run with RabbitMQ as the broker (a vhost per
test) and Redis as the run store. Leases are 2 s and sweeps 0.5 s here (:mod:`tests.support.cluster`), so "within lease +
sweep" is a few seconds.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from dagflow.dag.compile import STEP_TASK
from dagflow.errors import RunnerError
from tests.support.broker import read_message, step_lines
from tests.support.cluster import LEASE_S, SWEEP_S, Cluster, count
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT
from tests.support.rabbitmq import RabbitVhost, rabbitmq_available
from tests.support.services import require
from tests.support.waiting import wait_for, wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on a Redis broker, or (``indirect`` param ``rabbitmq``) on a RabbitMQ vhost
    of its own, with its run state in Redis."""
    vhost = None
    if getattr(request, "param", "redis") == "rabbitmq":
        require(rabbitmq_available(), "RabbitMQ is not running on 127.0.0.1:5672")
        vhost = RabbitVhost()
    c = Cluster(tmp_path, broker=vhost.url if vhost else None)
    try:
        yield c
    finally:
        c.close()
        if vhost is not None:
            vhost.delete()


BOTH_BROKERS = pytest.mark.parametrize("cluster", ["redis", "rabbitmq"], indirect=True)


def _attempts(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@BOTH_BROKERS
def test_a_whole_worker_killed_mid_step_is_recovered_within_lease_and_sweep(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a 3 s step running on worker a, and an idle worker b
    cluster.worker("a")
    dag = make_dag(
        [
            task("long", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 3}),
            task("after", deps=("long",)),
        ]
    )
    handle = cluster.runner.submit(dag)
    wait_for_file(tmp_path / "pids.txt")
    cluster.worker("b")
    # When worker a's main process and pool are killed together
    killed = time.monotonic()
    cluster.kill("a")
    # Then b runs the step again within lease + sweep, and the run succeeds
    wait_for(lambda: len(_attempts(tmp_path / "pids.txt")) == 2, LEASE_S + SWEEP_S + 3, "rerun")
    assert time.monotonic() - killed <= LEASE_S + SWEEP_S + 3
    result = handle.wait(timeout=30)
    assert (result.status, result.succeeded) == ("success", 2)
    events = cluster.events(handle.run_id)
    starts = [e for e in events if e["event"] == "task_start" and e["task_id"] == "long"]
    assert [(e["worker"].split("@")[0], e["fence"]) for e in starts] == [("a", 1), ("b", 2)]
    assert count(events, "task_ok", "long") == 1 and count(events, "dag_done") == 1


@BOTH_BROKERS
def test_a_retry_held_by_a_killed_worker_still_runs(cluster: Cluster, tmp_path: Path) -> None:
    # Given a task whose first attempt fails and whose retry (3 s later) worker a holds
    cluster.worker("a", DAGFLOW_RETRY_BASE_S="3", DAGFLOW_RETRY_MAX_S="3")
    params = {"dir": str(tmp_path), "key": "k", "failures": 1}
    dag = make_dag([task("flaky", "test.flaky", params=params, retries=2)])
    handle = cluster.runner.submit(dag)
    wait_for(lambda: count(cluster.events(handle.run_id), "task_retry") == 1, 20, "first failure")
    cluster.worker("b")
    # When worker a dies with the retry in its memory
    cluster.kill("a")
    # Then the retry runs when due (3 s) plus the outbox grace (one lease) and a sweep
    result = handle.wait(timeout=3 + LEASE_S + SWEEP_S + 10)
    assert result.status == "success"
    assert len(_attempts(tmp_path / "flaky-k.txt")) == 2
    events = cluster.events(handle.run_id)
    assert [e["attempt"] for e in events if e["event"] == "task_start"] == [1, 2]


@BOTH_BROKERS
def test_redis_restarted_mid_dag_loses_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a 200-task DAG (a fan-out of 198 between a root and a join) on two workers
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    mids = [f"m{i}" for i in range(198)]
    tasks = [
        task("root"),
        *(task(m, "test.sleep", deps=("root",), params={"seconds": 0.02}) for m in mids),
        task("join", deps=tuple(mids)),
    ]
    handle = cluster.runner.submit(make_dag(tasks))
    wait_for(lambda: count(cluster.events(handle.run_id), "task_ok") >= 30, 30, "30 tasks ok")
    # When Redis (broker and run store) is stopped and started again 3 s later (AOF kept)
    cluster.server.stop()
    time.sleep(3)
    cluster.server.restart()
    # Then the run completes with every task ok exactly once in the store and in the log
    result = handle.wait(timeout=90)
    assert (result.status, result.succeeded) == ("success", 200)
    events = cluster.events(handle.run_id)
    oks = [e["task_id"] for e in events if e["event"] == "task_ok"]
    assert sorted(oks) == sorted(["root", *mids, "join"])  # each exactly once
    assert count(events, "dag_done") == 1, [e for e in events if e["event"] == "dag_done"]


def test_a_connection_blip_never_runs_a_step_twice_at_the_same_time(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a 5 s step running on worker a, whose consumer keeps polling (2 pool slots),
    # and a worker b that could take a redelivered copy
    cluster.worker("a", concurrency=2)
    cluster.worker("b")
    params = {"dir": str(tmp_path), "seconds": 5}
    handle = cluster.runner.submit(make_dag([task("long", "test.sleep_traced", params=params)]))
    wait_for(lambda: "tick" in _read(tmp_path / "spans.txt"), 20, "the step runs")
    # When every client connection to Redis is killed (Redis stays up): kombu gives the
    # unacknowledged message back with the same id while the step still runs
    client = cluster.server.client()
    client.client_kill_filter(_type="normal", skipme=True)
    client.close()
    # Then the run ends, and no two executions of the workflow ever overlapped
    result = handle.wait(timeout=40)
    assert result.status == "success"
    spans = _spans(tmp_path / "spans.txt")
    for (_, e1), (s2, _) in itertools.pairwise(spans):
        assert s2 >= e1, f"two executions overlapped: {spans}"
    events = cluster.events(handle.run_id)
    assert count(events, "task_ok") == 1
    logs = cluster.log("a") + cluster.log("b")
    assert "Connection to broker lost" in logs  # the blip happened to a consumer


def test_a_connection_blip_costs_a_step_no_lease_wait(cluster: Cluster, tmp_path: Path) -> None:
    # Given a 5 s step running on worker a under the default 30 s lease
    cluster.worker("a", concurrency=2, DAGFLOW_LEASE_S="30")
    cluster.worker("b", DAGFLOW_LEASE_S="30")
    params = {"dir": str(tmp_path), "seconds": 5}
    handle = cluster.runner.submit(make_dag([task("long", "test.sleep_traced", params=params)]))
    wait_for(lambda: "tick" in _read(tmp_path / "spans.txt"), 20, "the step runs")
    started = time.monotonic()
    # When every client connection to Redis is killed 0.5 s into the step (Redis stays up)
    time.sleep(0.5)
    client = cluster.server.client()
    client.client_kill_filter(_type="normal", skipme=True)
    client.close()
    # Then the step runs on and commits: the run ends about when the step does, far
    # sooner than a lease; it ran once, on its first attempt; both workers still run
    result = handle.wait(timeout=40)
    elapsed = time.monotonic() - started
    assert result.status == "success"
    assert elapsed < 5 + 5, f"the blip cost {elapsed - 5:.1f} s"
    assert len(_spans(tmp_path / "spans.txt")) == 1
    events = cluster.events(handle.run_id)
    assert [e["attempt"] for e in events if e["event"] == "task_start"] == [1]
    assert count(events, "task_ok") == 1
    assert all(proc.poll() is None for proc in cluster.workers.values())
    assert "Connection to broker lost" in cluster.log("a")


def test_workers_outlive_redis_killed_under_load(cluster: Cluster, tmp_path: Path) -> None:
    # Given two workers busy with a steady stream of runs of 1 s steps
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    dag = make_dag(
        [
            task("s1", "test.sleep", params={"seconds": 1.0}),
            task("s2", "test.sleep", deps=("s1",), params={"seconds": 1.0}),
            task("s3", "test.sleep", deps=("s1",), params={"seconds": 1.0}),
            task("join", deps=("s2", "s3")),
        ]
    )
    handles = []
    for delay in (1.0, 2.5, 1.5):
        handles += [cluster.runner.submit(dag) for _ in range(3)]
        time.sleep(1.2)  # steps are running and others are queued
        # When Redis (broker and run store) is SIGKILLed and restarted (AOF kept)
        cluster.server.kill()
        time.sleep(delay)
        cluster.server.restart()
        time.sleep(1.0)
    # Then no worker process exited, and every run succeeded with each task ok once
    for handle in handles:
        result = handle.wait(timeout=60)
        assert (result.status, result.succeeded) == ("success", 4), handle.run_id
        oks = [e["task_id"] for e in cluster.events(handle.run_id) if e["event"] == "task_ok"]
        assert sorted(oks) == ["join", "s1", "s2", "s3"]
    exited = {
        name: proc.poll() for name, proc in cluster.workers.items() if proc.poll() is not None
    }
    assert not exited, f"workers exited: {exited}"
    logs = cluster.log("a") + cluster.log("b")
    assert "Unrecoverable error" not in logs
    assert logs.count("Connection to broker lost") >= 3


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _spans(path: Path) -> list[tuple[float, float]]:
    """(start, last sign of life) of each execution of ``test.sleep_traced``."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for line in path.read_text().splitlines():
        _kind, key, at = line.split()
        first.setdefault(key, float(at))
        last[key] = float(at)
    return sorted((first[k], last[k]) for k in first)


def test_a_duplicate_of_a_finished_root_costs_at_most_one_message_per_child(
    cluster: Cluster,
) -> None:
    # Given a finished lattice: 6 layers of 4, each task joining two of the layer above
    cluster.worker("a", concurrency=2)
    layers = [[f"l{d}_{i}" for i in range(4)] for d in range(6)]
    tasks = [task("root")]
    for d, layer in enumerate(layers):
        above = ["root"] if d == 0 else layers[d - 1]
        for i, tid in enumerate(layer):
            parents = tuple(sorted({above[i % len(above)], above[(i + 1) % len(above)]}))
            tasks.append(task(tid, deps=parents))
    handle = cluster.runner.submit(make_dag(tasks))
    assert handle.wait(timeout=60).status == "success"
    before = step_lines(cluster.log("a"))
    # When a duplicate step message of the root is delivered
    cluster.runner.app.send_task(STEP_TASK, args=(handle.run_id, "root"))
    time.sleep(SWEEP_S * 4)  # nothing more is expected: give any cascade time to show
    # Then at most one message per direct child follows it (here: none, all are finished)
    received = step_lines(cluster.log("a")) - before
    assert received <= 2 * (1 + 4), cluster.log("a")[-2000:]  # "received" + "succeeded" lines
    assert count(cluster.events(handle.run_id), "task_start") == 1 + 24


@BOTH_BROKERS
def test_pool_processes_killed_five_times_in_a_400_task_dag(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a 400-task DAG (20 chains of 20) on a worker with 4 pool processes
    proc = cluster.worker("a", concurrency=4)
    tasks = []
    for c in range(20):
        for i in range(20):
            deps = (f"c{c}_{i - 1}",) if i else ()
            params = {"seconds": 0.05}
            tasks.append(task(f"c{c}_{i}", "test.sleep", deps=deps, params=params))
    handle = cluster.runner.submit(make_dag(tasks))
    # When a busy pool process is SIGKILLed five times while it runs
    main = psutil.Process(proc.pid)
    for _ in range(5):
        time.sleep(0.4)
        children = main.children()
        if children:
            children[0].kill()
    # Then every task is ok exactly once in the store and in the log
    result = handle.wait(timeout=90)
    assert (result.status, result.succeeded) == ("success", 400)
    events = cluster.events(handle.run_id)
    oks = [e["task_id"] for e in events if e["event"] == "task_ok"]
    assert len(oks) == 400 and len(set(oks)) == 400


@BOTH_BROKERS
def test_a_step_terminated_from_outside_fails_the_run_with_a_reason(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a long step running
    cluster.worker("a")
    dag = make_dag(
        [
            task("long", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 30}),
            task("after", deps=("long",)),
        ]
    )
    handle = cluster.runner.submit(dag)
    wait_for_file(tmp_path / "pids.txt")
    store = redis.Redis.from_url(cluster.server.url(0), decode_responses=True)
    token = str(store.hget(f"dagflow:run:{{{handle.run_id}}}:claims", "long")).split("\t")[0]
    # When an operator terminates it (celery control terminate)
    cluster.runner.app.control.revoke(token, terminate=True, signal="SIGTERM")
    # Then the run ends as failed, naming the reason, instead of staying running
    result = handle.wait(timeout=LEASE_S * 2 + 10)
    assert (result.status, result.failed, result.skipped) == ("failed", 1, 1)
    fail = next(e for e in cluster.events(handle.run_id) if e["event"] == "task_fail")
    assert "terminated from outside" in fail["error"]


def test_a_run_whose_state_vanished_is_failed_and_its_waiter_told(cluster: Cluster) -> None:
    # Given a run with a long step
    cluster.worker("a")
    dag = make_dag([task("long", "test.sleep", params={"seconds": 30})])
    handle = cluster.runner.submit(dag)
    wait_for(lambda: count(cluster.events(handle.run_id), "task_start") == 1, 20, "start")
    # When its state is flushed from Redis (but the sweeper's index is left)
    client = cluster.server.client()
    for key in client.scan_iter(match=f"dagflow:run:{{{handle.run_id}}}:*"):
        client.delete(key)
    client.close()
    # Then the waiter is told at once, and the sweeper ends the run within two lease periods
    with pytest.raises(RunnerError, match="state is gone"):
        handle.wait(timeout=10)
    wait_for(
        lambda: count(cluster.events(handle.run_id), "dag_done") == 1, 2 * LEASE_S + 3, "dag_done"
    )
    done = next(e for e in cluster.events(handle.run_id) if e["event"] == "dag_done")
    assert done["status"] == "failed" and done["error"].startswith("stalled:")


def test_a_worker_that_cannot_import_its_workflows_refuses_to_start(cluster: Cluster) -> None:
    env = {**cluster.env, "DAGFLOW_WORKFLOWS": "no_such_module_xyz"}
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "dagflow", "worker", "-c", "1", "--pool", "solo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "no_such_module_xyz" in proc.stderr and " ready." not in proc.stdout + proc.stderr


def test_dagflow_wait_reattaches_and_rides_out_a_redis_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a running run, and `dagflow wait RUN_ID` in another process
    cluster.worker("a")
    dag = make_dag(
        [task("long", "test.sleep", params={"seconds": 4}), task("after", deps=("long",))]
    )
    handle = cluster.runner.submit(dag)
    waiter = subprocess.Popen(
        [sys.executable, "-m", "dagflow", "wait", handle.run_id, "--timeout", "60"],
        cwd=ROOT,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: count(cluster.events(handle.run_id), "task_start") == 1, 20, "start")
        # When Redis restarts under it
        cluster.server.stop()
        time.sleep(2)
        cluster.server.restart()
        # Then the waiter reconnects and prints the run's summary when it ends
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:  # a failed wait must not leave the waiter running
            waiter.kill()
            waiter.wait(10)
    assert waiter.returncode == 0, out + err
    assert "DAG EXECUTION COMPLETE" in out and f"Status: success (run {handle.run_id})" in out


def test_dagflow_wait_on_an_unknown_run_is_one_line(cluster: Cluster) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dagflow", "wait", "no-such-run"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip() == (
        "RunnerError: run no-such-run is not in the run store (unknown or expired)"
    )


def test_step_messages_lost_from_the_broker_are_sent_again(cluster: Cluster) -> None:
    # Given a run submitted while no worker listens
    handle = cluster.runner.submit(make_dag([task("a"), task("b", deps=("a",))]))
    # When its start messages are lost (purged from the broker's queue)
    assert cluster.runner.app.control.purge() >= 1
    # Then a worker started later still gets the step from the outbox, and the run ends
    cluster.worker("a")
    result = handle.wait(timeout=LEASE_S * 2 + SWEEP_S + 10)
    assert (result.status, result.succeeded) == ("success", 2)


def test_a_child_message_lost_after_its_parent_finished_is_sent_again(cluster: Cluster) -> None:
    # Given a chain a -> b on one worker process that holds one message at a time, while a
    # runs (so the worker is not waiting on the queue)
    cluster.worker("a")
    chain = make_dag([task("a", "test.sleep", params={"seconds": 1.0}), task("b", deps=("a",))])
    handle = cluster.runner.submit(chain)
    wait_for(lambda: count(cluster.events(handle.run_id), "task_start", "a") == 1, timeout=20)
    # When the message a's finish pushes for b is taken off the queue by another client
    # and dropped (a lost message)
    thief = redis.Redis.from_url(cluster.server.url(0))
    popped = thief.brpop(["celery"], timeout=20)
    assert popped is not None
    assert read_message(popped[1])["body"][0] == [handle.run_id, "b"]
    # Then the sweeper sends b again from the outbox, and b runs once
    result = handle.wait(timeout=LEASE_S * 2 + SWEEP_S + 10)
    assert (result.status, result.succeeded) == ("success", 2)
    events = cluster.events(handle.run_id)
    assert count(events, "task_start", "b") == count(events, "task_ok", "b") == 1
