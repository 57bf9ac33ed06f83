"""Steps delivered more than once (``acks_late``, a lost ack, a duplicate publish).

The two paths no other test reaches: a copy of a step whose task already finished, and a
second copy of a step that is running right now. Messages are sent by hand to the session
worker, as a redelivery would bring them.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from dagflow.client.runner import Runner
from tests.support.broker import log_size, send_step, step_ended, steps_seen, wait_until_idle
from tests.support.dags import make_dag, task
from tests.support.waiting import wait_for, wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
TIMEOUT = 60


def run_events(runner: Runner, run_id: str) -> list[dict[str, object]]:
    return [e for e in runner.runtime.events.read() if e.get("run_id") == run_id]


def finished_diamond(runner: Runner, trace: Path) -> str:
    """Run a -> (b, c) -> d to the end (each workflow records its calls); return its run id."""
    d = {"dir": str(trace)}
    dag = make_dag(
        [
            task("a", params={**d, "tag": "a"}),
            task("b", deps=("a",), params={**d, "tag": "b"}),
            task("c", deps=("a",), params={**d, "tag": "c"}),
            task("d", deps=("b", "c"), params={**d, "tag": "d"}),
        ]
    )
    handle = runner.submit(dag)
    assert handle.wait(timeout=TIMEOUT).status == "success"
    return handle.run_id


def redeliver(runner: Runner, broker: str, log: Path, run_id: str, task_id: str) -> int:
    """Send ``task_id``'s step again once the worker is idle; return the messages it then saw."""
    wait_until_idle(broker, log)
    offset = log_size(log)
    message_id = send_step(runner, run_id, task_id)
    wait_for(lambda: step_ended(log.read_text(), message_id), TIMEOUT)
    return wait_until_idle(broker, log, offset)


def test_redelivered_step_of_a_finished_task_runs_nothing_again(
    redis_runner: Runner, redis_db: str, worker_log: Path, tmp_path: Path
) -> None:
    # Given a finished run whose workflows record every call
    run_id = finished_diamond(redis_runner, tmp_path)
    events_before = run_events(redis_runner, run_id)
    # When the root's step is delivered again
    redeliver(redis_runner, redis_db, worker_log, run_id, "a")
    # Then no workflow ran again and the run's events did not change
    ran = (tmp_path / "ran.txt").read_text().split()
    assert collections.Counter(ran) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert run_events(redis_runner, run_id) == events_before


def test_redelivered_step_does_not_resend_children_that_already_ran(
    redis_runner: Runner, redis_db: str, worker_log: Path, tmp_path: Path
) -> None:
    # Given a finished run; when the root's step is delivered again
    run_id = finished_diamond(redis_runner, tmp_path)
    received = redeliver(redis_runner, redis_db, worker_log, run_id, "a")
    # Then no child is sent again: they all ran (O(children) at most, never O(paths))
    assert received == 1  # only the redelivered message itself


def test_second_copy_of_a_running_step_never_runs_it_twice_at_once(
    redis_runner: Runner, redis_db: str, worker_log: Path, tmp_path: Path
) -> None:
    # Given a run whose first task is sleeping in its workflow
    params = {"dir": str(tmp_path), "seconds": 1.5}
    dag = make_dag([task("slow", "test.exclusive", params=params), task("after", deps=("slow",))])
    handle = redis_runner.submit(dag)
    wait_for_file(tmp_path / "calls.txt")
    # When a second copy of its step is delivered while it runs
    offset = log_size(worker_log)
    send_step(redis_runner, handle.run_id, "slow")
    # Then the run ends once, successfully
    result = handle.wait(timeout=TIMEOUT)
    assert (result.status, result.succeeded) == ("success", 2)
    wait_until_idle(redis_db, worker_log, offset, timeout=TIMEOUT)
    # And the workflow never ran twice at the same time (a later run after a lease expired
    # would be allowed, an overlapping one never)
    calls = [line.split()[0] for line in (tmp_path / "calls.txt").read_text().splitlines()]
    assert "overlap" not in calls
    assert calls[0] == "start" and calls.count("start") == calls.count("end")
    # And exactly one task_ok was recorded for it
    oks = [
        e for e in run_events(redis_runner, handle.run_id)
        if e["event"] == "task_ok" and e["task_id"] == "slow"
    ]  # fmt: skip
    assert len(oks) == 1
    assert steps_seen(worker_log, offset)[0] >= 1  # the copy did reach the worker


def test_worker_log_names_the_dag_and_task_of_each_step(
    redis_runner: Runner, redis_db: str, worker_log: Path, tmp_path: Path
) -> None:
    # Given a finished run of `test_dag` (root a, then b and c, then the join d)
    offset = log_size(worker_log)
    finished_diamond(redis_runner, tmp_path)
    wait_until_idle(redis_db, worker_log, offset)
    with worker_log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    # Then every step was received under `<dag>:<task>`, the start canvas, the fan-out and
    # the join alike, and none as the bare `dagflow.step`
    for task_id in "abcd":
        assert f"Task test_dag:{task_id}[" in text, text[-2000:]
    assert "Task dagflow.step[" not in text
