"""A worker process killed mid-task loses nothing: the step is delivered again and the run ends."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from dagflow.client.runner import Runner
from tests.support.dags import make_dag, task
from tests.support.waiting import wait_for_file

pytestmark = pytest.mark.integration


def parent_pid(pid: int) -> int:
    """The parent of ``pid``, from ``/proc/<pid>/stat`` (its 4th field)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_killed_worker_process_is_replaced_and_the_step_runs_again(
    redis_runner: Runner, celery_worker_proc: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    # Given a run whose first task is running in a worker child process
    dag = make_dag(
        [
            task("victim", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 1.0}),
            task("after", deps=("victim",)),
        ]
    )
    handle = redis_runner.submit(dag)
    pids = tmp_path / "pids.txt"
    wait_for_file(pids)
    first_pid = int(pids.read_text().split()[0])
    # (a pool child of the session's own worker, which this suite started: never another's)
    assert parent_pid(first_pid) == celery_worker_proc.pid
    # When that process is killed with SIGKILL
    os.kill(first_pid, signal.SIGKILL)
    # Then the message goes back to the queue, another process runs the step, the run succeeds
    result = handle.wait(timeout=60)
    assert (result.status, result.succeeded) == ("success", 2)
    attempts = pids.read_text().split()
    assert len(attempts) == 2 and attempts[1] != attempts[0]
    starts = [
        e for e in redis_runner.runtime.events.read()
        if e.get("run_id") == handle.run_id and e["event"] == "task_start"
    ]  # fmt: skip
    assert [e["task_id"] for e in starts] == ["victim", "victim", "after"]
