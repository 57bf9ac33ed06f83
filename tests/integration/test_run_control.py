"""Run control: ``dagflow status``, ``runs`` and ``outputs`` from another process than the one
that submitted the run, readable failures, and the Python API (``get_run``, ``list_runs``).

Real ``celery -A dagflow worker`` processes on a private redis-server (one cluster for the
module); the commands run as ``python -m dagflow`` subprocesses with the cluster's environment.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dagflow
from dagflow.client.runner import RunHandle
from tests.support import workflows as test_workflows
from tests.support.cluster import Cluster
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WORKFLOWS_FILE = str(Path(test_workflows.__file__).resolve())


def _raise_line() -> int:
    """The line of ``raise ValueError`` in the ``test.fail`` workflow."""
    lines, first = inspect.getsourcelines(test_workflows.fail)
    return first + next(i for i, line in enumerate(lines) if "raise ValueError" in line)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("runctl"))
    try:
        c.worker("a", concurrency=2)
        yield c
    finally:
        c.close()


def dagflow_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m dagflow ARGS`` in a new process, with the cluster's environment."""
    return subprocess.run(
        [sys.executable, "-m", "dagflow", *args],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def failed_run(cluster: Cluster) -> RunHandle:
    """A finished run: ``good`` ok, ``bad`` failed after 2 attempts, ``after`` skipped."""
    dag = make_dag(
        [
            task("good", "test.value", params={"value": {"n": 7}}),
            task("bad", "test.fail", params={"message": "no disk left"}, retries=1),
            task("after", deps=("bad",)),
        ],
        name="runctl_failing",
        tenant="runctl",
    )
    handle = cluster.runner.submit(dag)
    result = handle.wait(timeout=60)
    assert result.status == "failed"
    return handle


BAD_LINE = "RunnerError: Task 'bad' failed after 2 attempts: ValueError: no disk left"


def test_status_from_another_process_shows_each_task(
    cluster: Cluster, failed_run: RunHandle
) -> None:
    # When another process asks for the failed run's status
    proc = dagflow_cli(cluster, "status", failed_run.run_id, "--json")
    # Then it exits 0 (a query) with every task's state, attempts, duration and last error
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert (status["run_id"], status["status"], status["dag_name"]) == (
        failed_run.run_id,
        "failed",
        "runctl_failing",
    )
    tasks = {t["task_id"]: t for t in status["tasks"]}
    assert [t["task_id"] for t in status["tasks"]] == ["good", "bad", "after"]  # plan order
    assert (tasks["good"]["state"], tasks["good"]["attempts"]) == ("ok", 1)
    assert tasks["good"]["duration_s"] is not None and tasks["good"]["error"] is None
    assert tasks["good"]["worker"].startswith("a@")
    assert (tasks["bad"]["state"], tasks["bad"]["attempts"]) == ("failed", 2)
    assert tasks["bad"]["error"] == BAD_LINE
    assert (tasks["after"]["state"], tasks["after"]["attempts"]) == ("skipped", 0)
    # And the text form names the error; --verbose adds the workflow's traceback
    text = dagflow_cli(cluster, "status", failed_run.run_id)
    assert text.returncode == 0, text.stderr
    assert f"Run {failed_run.run_id}: DAG 'runctl_failing' (tenant runctl): failed" in text.stdout
    assert BAD_LINE in text.stdout and "Traceback" not in text.stdout
    verbose = dagflow_cli(cluster, "status", failed_run.run_id, "--verbose")
    assert f'File "{WORKFLOWS_FILE}", line {_raise_line()}, in fail' in verbose.stdout


def test_a_failed_attempts_traceback_names_the_workflows_file_and_line(
    cluster: Cluster, failed_run: RunHandle
) -> None:
    events = cluster.events(failed_run.run_id)
    ends = [e for e in events if e["event"] in ("task_retry", "task_fail")]
    assert [e["event"] for e in ends] == ["task_retry", "task_fail"]
    where = f'File "{WORKFLOWS_FILE}", line {_raise_line()}, in fail'
    for event in ends:
        trace = event["traceback"]
        assert where in trace and trace.endswith("ValueError: no disk left")
        assert "/dagflow/" not in trace and "/celery/" not in trace  # trimmed
        assert len(trace) <= 4096
    # The same traceback is kept with the task in the run store
    bad = next(t for t in failed_run.tasks() if t.task_id == "bad")
    assert bad.last.traceback == ends[-1]["traceback"]


def test_outputs_from_another_process(cluster: Cluster, failed_run: RunHandle) -> None:
    everything = dagflow_cli(cluster, "outputs", failed_run.run_id)
    assert everything.returncode == 0, everything.stderr
    assert json.loads(everything.stdout) == {"good": {"n": 7}}
    one = dagflow_cli(cluster, "outputs", failed_run.run_id, "good")
    assert one.returncode == 0 and json.loads(one.stdout) == {"n": 7}
    missing = dagflow_cli(cluster, "outputs", failed_run.run_id, "bad")
    assert missing.returncode == 1 and "has no output (it is failed)" in missing.stderr
    unknown = dagflow_cli(cluster, "outputs", failed_run.run_id, "nope")
    assert unknown.returncode == 2 and "has no task 'nope'" in unknown.stderr


def test_the_summary_names_each_failed_task(cluster: Cluster, failed_run: RunHandle) -> None:
    # Given a second run where two tasks fail
    dag = make_dag(
        [
            task("x", "test.fail", params={"message": "x broke"}),
            task("y", "test.fail", params={"message": "y broke"}, retries=2),
        ],
        name="runctl_two_failures",
        tenant="runctl",
    )
    handle = cluster.runner.submit(dag)
    # When another process waits for each run
    proc = dagflow_cli(cluster, "wait", handle.run_id, "--timeout", "60")
    # Then the summary has one line per failed task, with its attempts and error
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "RunnerError: Task 'x' failed after 1 attempt: ValueError: x broke\n" in proc.stdout
    assert "RunnerError: Task 'y' failed after 3 attempts: ValueError: y broke\n" in proc.stdout
    first = dagflow_cli(cluster, "wait", failed_run.run_id)
    assert first.returncode == 1 and BAD_LINE + "\n" in first.stdout


def test_runs_filters_and_orders_newest_first(cluster: Cluster, failed_run: RunHandle) -> None:
    # Given three more runs of two DAGs and two tenants, started one after the other
    started = []
    for name, tenant in [("rc_list_a", "t-one"), ("rc_list_b", "t-two"), ("rc_list_a", "t-two")]:
        handle = cluster.runner.submit(make_dag([task("only")], name=name, tenant=tenant))
        handle.wait(timeout=60)
        started.append(handle.run_id)
    first, second, third = started

    def listed(*args: str) -> list[str]:
        proc = dagflow_cli(cluster, "runs", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [r["run_id"] for r in json.loads(proc.stdout)]

    # Then each filter keeps the matching runs, newest first
    assert listed("--dag", "rc_list_a") == [third, first]
    assert listed("--tenant", "t-two") == [third, second]
    assert listed("--tenant", "t-two", "--dag", "rc_list_b") == [second]
    assert listed("--limit", "3") == [third, second, first]
    failed = listed("--status", "failed")
    assert failed_run.run_id in failed and not set(started) & set(failed)
    assert listed("--tenant", "t-one", "--status", "success") == [first]
    text = dagflow_cli(cluster, "runs", "--dag", "rc_list_b")
    assert second in text.stdout and "success" in text.stdout and "rc_list_b (t-two)" in text.stdout


def test_the_python_api_from_a_fresh_client(cluster: Cluster, failed_run: RunHandle) -> None:
    # A new client (not the runner that submitted the run) reads it through the store
    handle = dagflow.get_run(failed_run.run_id, settings=cluster.settings)
    status = handle.status()
    assert status.status == "failed" and status.failures == [BAD_LINE]
    assert handle.outputs() == {"good": {"n": 7}}
    assert handle.wait(timeout=5).failures == (BAD_LINE,)
    runs = dagflow.list_runs(tenant="runctl", dag="runctl_failing", settings=cluster.settings)
    assert [r.run_id for r in runs] == [failed_run.run_id]
    with pytest.raises(dagflow.RunnerError, match="unknown or expired"):
        dagflow.get_run("0" * 32, settings=cluster.settings)


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["outputs"], ["wait"]], ids=" ".join
)
def test_an_unknown_run_is_one_line_and_exit_3(cluster: Cluster, args: list[str]) -> None:
    proc = dagflow_cli(cluster, *args[:1], "f" * 32, *args[1:])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"RunnerError: run {'f' * 32} is not in the run store (unknown or expired)"
    ]
