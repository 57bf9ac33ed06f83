"""``dagflow run --timeout``: what it prints and when it exits (issue 21's "Also" items)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_cli import dagflow

SLOW_DAG = (
    "name: slow\ntenant_id: t\ntasks:\n"
    "  - {id: nap, workflow_ref: test.sleep, params: {seconds: SECONDS}}\n"
)
WORKFLOWS = {"DAGFLOW_WORKFLOWS": "tests.support.workflows"}


def slow_dag(tmp_path: Path, seconds: float) -> Path:
    dag = tmp_path / "slow.yaml"
    dag.write_text(SLOW_DAG.replace("SECONDS", str(seconds)))
    return dag


@pytest.mark.timeout(60)
def test_embedded_run_exits_at_its_timeout_not_when_the_step_ends(tmp_path: Path) -> None:
    # Given a DAG whose one step sleeps 8 s, on the embedded worker
    dag = slow_dag(tmp_path, 8)
    env = {**WORKFLOWS, "ORCH_EVENTS_PATH": str(tmp_path / "events.jsonl")}
    # When it is run with --timeout 2
    started = time.monotonic()
    proc = dagflow("run", "--quiet", "--timeout", "2", str(dag), env=env)
    elapsed = time.monotonic() - started
    # Then it says the run is cancelled and exits 4 at the timeout, not after the step
    assert proc.returncode == 4, proc.stderr
    assert "gave up after 2 s" in proc.stderr and "it is cancelled" in proc.stderr
    assert elapsed < 6.0, f"exited after {elapsed:.1f} s (the step sleeps 8 s)"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_run_with_workers_says_how_to_follow_and_how_to_cancel(
    scratch_redis: str, tmp_path: Path
) -> None:
    # Given a broker and no worker, so the run cannot end
    dag = slow_dag(tmp_path, 0)
    env = {
        **WORKFLOWS,
        "DAGFLOW_BROKER_URL": scratch_redis,
        "DAGFLOW_EVENTS": "file",
        "ORCH_EVENTS_PATH": str(tmp_path / "events.jsonl"),
    }
    # When `dagflow run --timeout 1` gives up
    proc = dagflow("run", "--quiet", "--timeout", "1", str(dag), env=env)
    # Then it names both commands, with the run id
    assert proc.returncode == 4, proc.stderr
    run_id = proc.stdout.split()[1].rstrip(":")
    assert f"  follow it: dagflow wait {run_id}" in proc.stderr.splitlines()
    assert f"  cancel it: dagflow cancel {run_id}" in proc.stderr.splitlines()
