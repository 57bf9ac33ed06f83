"""Recovery within the README's bound while the step queue has a long backlog.

A dead worker's step or retry must not wait for the queue to drain: the sweeper sends what
a dead worker held to the head of the queue (an expired lease, or a message the worker
held unacknowledged without running it). Leases are 2 s and sweeps 0.5 s here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagflow.client.runner import RunHandle
from tests.support.cluster import LEASE_S, SWEEP_S, Cluster, count
from tests.support.dags import make_dag, task
from tests.support.waiting import wait_for, wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: Seconds of slack on the recovery bound for a loaded 2-core machine.
SLACK_S = 3.0
#: Steps of the backlog run: 0.1 s each, about 20 s of work for one worker process.
BACKLOG = 200
#: Celery's default queue, where dagflow's steps go.
QUEUE = "celery"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _flood(cluster: Cluster) -> RunHandle:
    """Submit a run whose root fans out to :data:`BACKLOG` steps; return once most of them
    wait in the queue."""
    mids = [f"m{i}" for i in range(BACKLOG)]
    dag = make_dag(
        [
            task("root"),
            *(task(m, "test.sleep", deps=("root",), params={"seconds": 0.1}) for m in mids),
        ],
        name="backlog",
    )
    handle = cluster.runner.submit(dag)
    queue = cluster.server.client()
    wait_for(lambda: queue.llen(QUEUE) > BACKLOG // 2, 20, "a backlog in the queue")
    return handle


def _starts(cluster: Cluster, handle: RunHandle, task_id: str) -> list[dict[str, object]]:
    return [
        e
        for e in cluster.events(handle.run_id)
        if e["event"] == "task_start" and e["task_id"] == task_id
    ]


def test_a_retry_held_by_a_killed_worker_runs_in_time_behind_a_backlog(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given worker a holding a retry due 3 s after the first attempt failed
    retry_s = 3.0
    cluster.worker("a", DAGFLOW_RETRY_BASE_S=str(retry_s), DAGFLOW_RETRY_MAX_S=str(retry_s))
    params = {"dir": str(tmp_path), "key": "k", "failures": 1}
    handle = cluster.runner.submit(
        make_dag([task("flaky", "test.flaky", params=params, retries=2)])
    )
    wait_for(lambda: count(cluster.events(handle.run_id), "task_retry") == 1, 20, "first failure")
    failed = time.monotonic()
    # ... and a queue with a long backlog, served by worker b alone once a is gone
    cluster.worker("b")
    _flood(cluster)
    # When worker a dies with the retry in its memory
    cluster.kill("a")
    killed = time.monotonic()
    # Then the retry starts within due + lease + sweep, long before the backlog drained
    bound = max(failed + retry_s, killed) + LEASE_S + SWEEP_S + SLACK_S
    wait_for(lambda: len(_starts(cluster, handle, "flaky")) == 2, 60, "the retry starts")
    started = time.monotonic()
    assert started <= bound, f"the retry started {started - bound:.1f} s after its bound"
    assert cluster.server.client().llen(QUEUE) > 0, "the backlog drained first: not under load"
    result = handle.wait(timeout=30)
    assert result.status == "success"
    assert [e["attempt"] for e in _starts(cluster, handle, "flaky")] == [1, 2]


def test_a_step_held_by_a_killed_worker_runs_in_time_behind_a_backlog(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given worker a running a 3 s step, and a queue with a long backlog that b serves
    cluster.worker("a")
    params = {"dir": str(tmp_path), "seconds": 3}
    handle = cluster.runner.submit(make_dag([task("long", "test.pid_sleep", params=params)]))
    wait_for_file(tmp_path / "pids.txt")
    cluster.worker("b")
    _flood(cluster)
    # When worker a dies mid-step
    cluster.kill("a")
    killed = time.monotonic()
    # Then the step runs again within lease + sweep, ahead of the backlog
    wait_for(lambda: len(_starts(cluster, handle, "long")) == 2, 60, "the step runs again")
    elapsed = time.monotonic() - killed
    assert elapsed <= LEASE_S + SWEEP_S + SLACK_S, f"recovered {elapsed:.1f} s after the kill"
    assert cluster.server.client().llen(QUEUE) > 0, "the backlog drained first: not under load"
    result = handle.wait(timeout=30)
    assert result.status == "success"
    assert count(cluster.events(handle.run_id), "task_ok") == 1
