"""Queues: every step runs on a worker of its task's queue, whatever path sent it.

Two real workers on one private Redis: ``cpu`` consumes only Celery's default queue
(``-Q celery``), ``gpu`` only ``gpu``. Each ``task_start`` event names the worker that ran
the step, so a step that went to the wrong queue shows up as the wrong worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.celery_app import make_app
from dagflow.client.runner import Runner
from dagflow.execution import broker_queue
from dagflow.execution.lifecycle import start_run
from dagflow.execution.publish import send_steps
from dagflow.execution.sweeper import resends
from dagflow.settings import Settings
from tests.support.cluster import LEASE_S, SWEEP_S, Cluster, count
from tests.support.dags import make_dag, task
from tests.support.waiting import wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CPU, GPU = ["-Q", "celery"], ["-Q", "gpu"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster with one worker on the default queue and one on ``gpu``."""
    c = Cluster(tmp_path)
    try:
        c.worker("cpu", concurrency=2, extra_args=CPU)
        c.worker("gpu", concurrency=2, extra_args=GPU)
        yield c
    finally:
        c.close()


def starts(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(task_id, worker name)`` of every ``task_start``, in log order."""
    return [
        (e["task_id"], str(e["worker"]).split("@")[0]) for e in events if e["event"] == "task_start"
    ]


def test_each_step_runs_on_a_worker_of_its_queue_through_joins_and_retries(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a DAG alternating queues: a fan-out from a to both queues (sent after a's
    # finish), a join d on gpu that fails once (its retry must come back to gpu), a chain
    # link e back to the default queue and g onto gpu (pushed by e's finish script)
    gpu = {"queue": "gpu"}
    dag = make_dag(
        [
            task("a"),
            task("b", deps=("a",), **gpu),
            task("c", deps=("a",)),
            task(
                "d",
                "test.flaky",
                deps=("b", "c"),
                retries=2,
                params={"dir": str(tmp_path), "key": "d", "failures": 1},
                **gpu,
            ),
            task("e", deps=("d",)),
            task("g", deps=("e",), **gpu),
        ],
        name="alternating",
    )
    # When it runs
    handle = cluster.runner.submit(dag)
    result = handle.wait(timeout=60)
    assert (result.status, result.succeeded) == ("success", 6)
    # Then every step, the retry of d included, ran on the worker of its queue
    ran = starts(cluster.events(handle.run_id))
    assert sorted(ran) == sorted(
        [("a", "cpu"), ("b", "gpu"), ("c", "cpu"), ("d", "gpu"), ("d", "gpu"), ("e", "cpu"), ("g", "gpu")]
    )  # fmt: skip
    assert count(cluster.events(handle.run_id), "task_retry", "d") == 1


def test_a_dag_level_queue_is_the_default_of_its_tasks(cluster: Cluster) -> None:
    # Given a DAG whose default queue is gpu and whose task b names the default queue
    dag = make_dag(
        [task("a"), task("b", deps=("a",), queue="celery"), task("c", deps=("b",))],
        name="gpu_default",
        queue="gpu",
    )
    handle = cluster.runner.submit(dag)
    assert handle.wait(timeout=60).status == "success"
    assert starts(cluster.events(handle.run_id)) == [("a", "gpu"), ("b", "cpu"), ("c", "gpu")]


def test_a_step_whose_gpu_worker_died_comes_back_on_the_gpu_queue(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a run whose gpu step is running on the gpu worker
    dag = make_dag(
        [
            task("a"),
            task(
                "heavy",
                "test.where_sleep",
                deps=("a",),
                params={"dir": str(tmp_path), "seconds": 1.0},
                queue="gpu",
            ),
            task("after", deps=("heavy",)),
        ],
        name="recovered",
    )
    handle = cluster.runner.submit(dag)
    wait_for_file(tmp_path / "where.txt")
    # When the gpu worker is killed mid-step, and no gpu worker lives for a while: the
    # sweeper re-sends the step after its lease expires, and it must wait on gpu
    cluster.kill("gpu")
    time.sleep(LEASE_S + 4 * SWEEP_S + 1.0)
    assert count(cluster.events(handle.run_id), "task_start", "heavy") == 1
    # And another gpu worker starts
    cluster.worker("gpu2", extra_args=GPU)
    result = handle.wait(timeout=60)
    # Then the step ran again on the new gpu worker, never on the default queue's worker
    assert (result.status, result.succeeded) == ("success", 3)
    ran = starts(cluster.events(handle.run_id))
    assert [w for t, w in ran if t == "heavy"] == ["gpu", "gpu2"]
    assert [w for t, w in ran if t != "heavy"] == ["cpu", "cpu"]
    assert len((tmp_path / "where.txt").read_text().splitlines()) == 2
    # (sent again by the sweeper, as its lease expired: not by the broker's redelivery)
    logs = cluster.log("cpu") + cluster.log("gpu2")
    assert "lease of step" in logs and "/heavy on gpu@" in logs


def test_the_sweeper_judges_a_due_step_by_the_backlog_of_its_own_queue(
    scratch_redis: str,
) -> None:
    # Given a broker whose default queue has a backlog and whose gpu queue is empty
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    assert send_steps(app, "other", ["x", "y"], "etl", queues={})
    # When the sweeper looks at two due outbox entries, one on each queue
    due = [("run-1", "on_default"), ("run-1", "on_gpu")]
    view = broker_queue.look(app, queues={"celery", "gpu"})
    front, back = resends(app, due, set(), lambda step: "gpu" if step[1] == "on_gpu" else None)
    # Then it reads each queue's backlog, and sends the gpu step at once (its queue has
    # drained) while the default one waits for its busy queue
    assert view.backlogs == {"celery": 2, "gpu": 0}
    assert (front, back) == ([], [("run-1", "on_gpu")])


def test_the_running_embedded_worker_takes_on_the_queues_of_a_new_dag(
    embedded_runner: Runner, tmp_path: Path
) -> None:
    # Given the embedded worker, started on the default queue only (the session's runner)
    # When a DAG on two more queues runs on it, with a retry on one of them
    dag = make_dag(
        [
            task("a", queue="io"),
            task(
                "b",
                "test.flaky",
                deps=("a",),
                retries=1,
                params={"dir": str(tmp_path), "key": "b", "failures": 1},
                queue="gpu",
            ),
            task("c", deps=("b",)),
        ],
        name="embedded_queues",
    )
    result = embedded_runner.submit(dag).wait(timeout=60)
    # Then it consumed them, and the run (retry included) succeeded
    assert (result.status, result.succeeded) == ("success", 3)


def test_the_embedded_worker_consumes_the_queues_of_a_run_started_without_submit(
    embedded_runner: Runner,
) -> None:
    # Given a run started in this process the way a schedule's firing is (not via submit),
    # on a queue the embedded worker has never consumed
    dag = make_dag([task("a", queue="nightly"), task("b", deps=("a",))], name="fired")
    run_id = start_run(embedded_runner.app, embedded_runner.runtime, dag)
    # Then the worker takes the queue on as the run starts, and the run ends
    result = embedded_runner.attach(run_id).wait(timeout=30)
    assert (result.status, result.succeeded) == ("success", 2)


def test_status_says_when_a_step_waits_on_a_queue_nobody_consumes(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a run whose second task goes to queue 'tpu', which no worker consumes
    dag = make_dag([task("a"), task("b", deps=("a",), queue="tpu")], name="tpu_dag")
    handle = cluster.runner.submit(dag)
    reader = cluster.runner.attach(handle.run_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not reader.unconsumed_waits():
        time.sleep(0.2)
    # Then the handle (what dagflow status prints) names the queue and the waiting step
    assert reader.unconsumed_waits() == {"tpu": ["b"]}
    # and once a worker consumes tpu the step runs and nothing is flagged any more
    cluster.worker("tpu", extra_args=["-Q", "tpu"])
    assert handle.wait(timeout=60).status == "success"
    assert reader.unconsumed_waits() == {}


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_steps_and_map_instances_run_on_their_queue_on_both_brokers(
    tmp_path: Path, broker: str
) -> None:
    from tests.support.rabbitmq import RabbitVhost, rabbitmq_available
    from tests.support.services import require

    # Given a cpu and a gpu worker on a Redis broker, or on a RabbitMQ vhost of this test's
    vhost = None
    if broker == "rabbitmq":
        require(rabbitmq_available(), "RabbitMQ is not running on 127.0.0.1:5672")
        vhost = RabbitVhost()
    c = Cluster(tmp_path, broker=vhost.url if vhost else None)
    try:
        c.worker("cpu", concurrency=2, extra_args=CPU)
        c.worker("gpu", concurrency=2, extra_args=GPU)
        # When a DAG runs whose mapped task and one plain task are on gpu
        dag = make_dag(
            [
                task("list_files", "test.list", params={"n": 4}),
                task(
                    "train", "test.map_item", ("list_files",), map="list_files.files", queue="gpu"
                ),
                task("report", deps=("train",)),
                task("publish", deps=("report",), queue="gpu"),
            ],
            name=f"queues_{broker}",
        )
        handle = c.runner.submit(dag)
        assert handle.wait(timeout=60).status == "success"
        # Then every step ran on a worker of its queue
        ran = starts(c.events(handle.run_id))
        assert ("list_files", "cpu") in ran and ("report", "cpu") in ran
        assert ("publish", "gpu") in ran
        assert sorted(t for t, w in ran if w == "gpu") == [
            "publish",
            "train[0]",
            "train[1]",
            "train[2]",
            "train[3]",
        ]
    finally:
        c.close()
        if vhost is not None:
            vhost.delete()
