"""Trigger rules and branches end to end: on Redis workers (``celery -A dagflow worker``
subprocesses) and on the embedded worker, the same DAGs, the same outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dagflow.client.runner import Runner
from tests.support.dags import make_dag, task

pytestmark = pytest.mark.integration
TIMEOUT = 120


@pytest.fixture(params=["embedded", "redis"])
def runner(request: pytest.FixtureRequest) -> Runner:
    """Each test runs on the embedded worker and on the session's Redis worker."""
    return request.getfixturevalue(f"{request.param}_runner")  # type: ignore[no-any-return]


def events_of(runner: Runner, run_id: str) -> list[dict[str, Any]]:
    return [e for e in runner.runtime.events.read() if e.get("run_id") == run_id]


def ran(trace_dir: Path) -> list[str]:
    path = trace_dir / "ran.txt"
    return sorted(path.read_text().splitlines()) if path.exists() else []


def skips(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["task_id"]: e["error"] for e in events if e["event"] == "task_skip"}


def echo(task_id: str, trace: Path, deps: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    return task(task_id, deps=deps, params={"dir": str(trace), "tag": task_id}, **kw)


def test_a_cleanup_runs_after_a_failure_and_the_run_still_fails(
    runner: Runner, tmp_path: Path
) -> None:
    # Given extract fails, load depends on it, and cleanup runs whatever happened
    dag = make_dag(
        [
            task("extract", "test.fail", params={"message": "source down"}),
            echo("load", tmp_path, ("extract",)),
            echo("cleanup", tmp_path, ("extract", "load"), trigger_rule="all_done"),
        ],
        name="cleanup_after_failure",
    )
    # When it runs
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    # Then cleanup ran, load was skipped, and the run is failed (a task failed)
    assert ran(tmp_path) == ["cleanup"]
    assert (result.status, result.succeeded, result.failed, result.skipped) == (
        "failed",
        1,
        1,
        1,
    )
    assert not result.ok
    events = events_of(runner, handle.run_id)
    assert skips(events) == {"load": "skipped: upstream task 'extract' failed"}
    assert [e["status"] for e in events if e["event"] == "dag_done"] == ["failed"]


@pytest.mark.parametrize("join_rule", ["all_done", "none_failed"])
def test_a_branch_runs_its_choice_and_skips_the_other_path(
    runner: Runner, tmp_path: Path, join_rule: str
) -> None:
    # Given check chooses rebuild; reuse and its child are the other path
    dag = make_dag(
        [
            task("check", "test.value", params={"value": {"branch": ["rebuild"]}}, branch=True),
            echo("rebuild", tmp_path, ("check",)),
            echo("reuse", tmp_path, ("check",)),
            echo("reuse_more", tmp_path, ("reuse",)),
            echo("cleanup", tmp_path, ("rebuild", "reuse_more"), trigger_rule=join_rule),
        ],
        name="branch_and_join",
    )
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    # Then only the chosen path and the join after both paths ran, and the run succeeded
    assert ran(tmp_path) == ["cleanup", "rebuild"]
    assert (result.status, result.succeeded, result.skipped) == ("success", 3, 2)
    assert skips(events_of(runner, handle.run_id)) == {
        "reuse": "skipped: not chosen by branch 'check'",
        "reuse_more": "skipped: upstream task 'reuse' was skipped",
    }


def test_an_all_success_task_below_a_skipped_branch_is_skipped(
    runner: Runner, tmp_path: Path
) -> None:
    dag = make_dag(
        [
            task("check", "test.value", params={"value": {"branch": "reuse"}}, branch=True),
            echo("rebuild", tmp_path, ("check",)),
            echo("reuse", tmp_path, ("check",)),
            echo("publish", tmp_path, ("rebuild", "reuse")),
        ],
        name="branch_all_success",
    )
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert ran(tmp_path) == ["reuse"]
    assert (result.status, result.succeeded, result.skipped) == ("success", 2, 2)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            {"branch": "deploy"},
            "Task 'check' is a branch task: its output key 'branch' names 'deploy', not a "
            "child of it (children: rebuild, reuse)",
        ),
        (
            {"chosen": "rebuild"},
            "Task 'check' is a branch task: its output must hold the key 'branch'",
        ),
        (
            {"branch": 3},
            "Task 'check' is a branch task: its output key 'branch' must be a child id or "
            "a list of child ids, got int",
        ),
    ],
)
def test_a_bad_branch_fails_the_branch_task_at_once(
    runner: Runner, tmp_path: Path, output: dict[str, Any], expected: str
) -> None:
    # Given a branch task with retries whose output names no valid child
    dag = make_dag(
        [
            task("check", "test.value", params={"value": output}, branch=True, retries=2),
            echo("rebuild", tmp_path, ("check",)),
            echo("reuse", tmp_path, ("check",)),
            echo("cleanup", tmp_path, ("rebuild", "reuse"), trigger_rule="all_done"),
        ],
        name="bad_branch",
    )
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    # Then it failed on its first attempt (no retry), naming the problem
    assert result.status == "failed" and result.failed == 1
    assert len(result.failures) == 1 and expected in result.failures[0]
    assert "after 1 attempt" in result.failures[0]
    events = events_of(runner, handle.run_id)
    assert not [e for e in events if e["event"] == "task_retry"]
    # And its children were skipped, while the cleanup ran
    assert ran(tmp_path) == ["cleanup"]
    assert set(skips(events)) == {"rebuild", "reuse"}


def test_one_failed_runs_an_alert_only_when_a_parent_fails(runner: Runner, tmp_path: Path) -> None:
    dag = make_dag(
        [
            echo("a", tmp_path),
            task("b", "test.fail"),
            echo("alert", tmp_path, ("a", "b"), trigger_rule="one_failed"),
            echo("all_good", tmp_path, ("a",), trigger_rule="one_failed"),
            echo("after_alert", tmp_path, ("alert",)),
        ],
        name="alerts",
    )
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert ran(tmp_path) == ["a", "after_alert", "alert"]
    assert (result.status, result.skipped) == ("failed", 1)
    assert skips(events_of(runner, handle.run_id)) == {
        "all_good": "skipped: trigger rule one_failed can no longer be met"
    }


def test_a_retry_lets_the_branch_choose_again_and_keeps_the_other_path_skipped(
    runner: Runner, tmp_path: Path
) -> None:
    # Given a run whose branch chose rebuild and whose final step failed
    dag = make_dag(
        [
            task("check", "test.value", params={"value": {"branch": "rebuild"}}, branch=True),
            echo("rebuild", tmp_path, ("check",)),
            echo("reuse", tmp_path, ("check",)),
            task("final", "test.fail", deps=("rebuild", "reuse"), trigger_rule="all_done"),
        ],
        name="branch_retry",
    )
    first = runner.submit(dag)
    assert first.wait(timeout=TIMEOUT).status == "failed"
    # When it is retried
    again = first.retry()
    result = again.wait(timeout=TIMEOUT)
    # Then check ran again, rebuild was reused, reuse stayed skipped, and final ran again
    assert ran(tmp_path) == ["rebuild"]
    assert (result.status, result.succeeded, result.failed, result.skipped) == (
        "failed",
        2,
        1,
        1,
    )
    events = events_of(runner, again.run_id)
    assert [e["task_id"] for e in events if e["event"] == "task_reused"] == ["rebuild"]
    assert skips(events) == {"reuse": "skipped: not chosen by branch 'check'"}
