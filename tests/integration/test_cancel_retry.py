"""Run control, part two: ``dagflow cancel``, ``dagflow retry``, run-level params and the run
context, on real ``celery -A dagflow worker`` processes and a private redis-server (one
cluster for the module), and in the embedded mode.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

import dagflow
from dagflow.scheduling.firing import START_TASK, Firing
from tests.support.cluster import Cluster, count
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT, TEST_WORKFLOWS
from tests.support.processes import dagflow_cli as cli
from tests.support.waiting import wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cancel"))
    try:
        c.worker("a", concurrency=2)
        yield c
    finally:
        c.close()


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def token_of(cluster: Cluster, run_id: str, task_id: str) -> str:
    store = redis.Redis.from_url(cluster.server.url(0), decode_responses=True)
    return str(store.hget(f"dagflow:run:{{{run_id}}}:claims", task_id)).split("\t")[0]


def test_cancel_interrupts_a_running_step_and_the_rest_never_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given a long step running on a prefork worker, with a task after it
    dag = make_dag(
        [
            task("long", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 60}),
            task(
                "after", "test.count", deps=("long",), params={"dir": str(tmp_path), "key": "after"}
            ),
        ],
        name="cancel_running",
    )
    handle = cluster.runner.submit(dag)
    wait_for_file(tmp_path / "pids.txt")
    pid = int((tmp_path / "pids.txt").read_text().split()[0])
    # When an operator cancels it from another process
    proc = cli(cluster.env, "cancel", handle.run_id)
    # Then the command says what it did, and the run ends cancelled within seconds
    assert proc.returncode == 0, proc.stderr
    assert f"run {handle.run_id} cancelled" in proc.stdout and "long" in proc.stdout
    result = handle.wait(timeout=20)
    assert (result.status, result.cancelled, result.failed) == ("cancelled", 2, 0)
    states = {t.task_id: t.state for t in handle.tasks()}
    assert states == {"long": "cancelled", "after": "cancelled"}
    # And the pool process running the step was terminated, and 'after' never ran
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(pid)
    assert lines(tmp_path / "calls-after.txt") == 0
    # And the event log says so: one task_cancel each, dag_done cancelled with its counts
    events = cluster.events(handle.run_id)
    assert count(events, "task_cancel", "long") == 1 and count(events, "task_cancel", "after") == 1
    assert count(events, "task_fail") == 0
    done = [e for e in events if e["event"] == "dag_done"]
    assert len(done) == 1 and done[0]["status"] == "cancelled" and done[0]["tasks_cancelled"] == 2
    # And cancelling it again changes nothing
    again = cli(cluster.env, "cancel", handle.run_id)
    assert again.returncode == 0 and "already ended (cancelled)" in again.stdout


def test_a_run_cancelled_before_its_steps_start_runs_none_of_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given both worker slots busy with another run
    blocker = cluster.runner.submit(
        make_dag(
            [
                task("s1", "test.sleep", params={"seconds": 3}),
                task("s2", "test.sleep", params={"seconds": 3}),
            ],
            name="cancel_blocker",
        )
    )
    time.sleep(0.5)
    # When a run is submitted and cancelled before a worker picks its steps up
    dag = make_dag(
        [
            task("a", "test.count", params={"dir": str(tmp_path), "key": "a"}),
            task("b", "test.count", params={"dir": str(tmp_path), "key": "b"}),
        ],
        name="cancel_early",
    )
    handle = cluster.runner.submit(dag)
    outcome = dagflow.get_run(handle.run_id, settings=cluster.settings).cancel()
    # Then the run ends cancelled at once and none of its workflows ever runs
    assert not outcome.already_ended and sorted(outcome.cancelled) == ["a", "b"]
    result = handle.wait(timeout=10)
    assert (result.status, result.cancelled) == ("cancelled", 2)
    assert blocker.wait(timeout=30).status == "success"
    time.sleep(0.5)  # the cancelled run's messages were delivered meanwhile, and dropped
    assert lines(tmp_path / "calls-a.txt") == lines(tmp_path / "calls-b.txt") == 0
    assert count(cluster.events(handle.run_id), "task_start") == 0


def test_cancelling_a_finished_run_changes_nothing(cluster: Cluster) -> None:
    handle = cluster.runner.submit(make_dag([task("only")], name="cancel_finished"))
    assert handle.wait(timeout=30).status == "success"
    proc = cli(cluster.env, "cancel", handle.run_id)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"run {handle.run_id} already ended (success): nothing to cancel"
    status = handle.status()
    assert status.status == "success" and status.counts["cancelled"] == 0
    assert count(cluster.events(handle.run_id), "task_cancel") == 0
    unknown = cli(cluster.env, "cancel", "0" * 32)
    assert unknown.returncode == 3 and "unknown or expired" in unknown.stderr


def test_retry_reuses_what_succeeded_and_runs_the_rest(cluster: Cluster, tmp_path: Path) -> None:
    # Given a run where 'good' succeeded, 'bad' failed and 'after' was skipped
    (tmp_path / "broken").write_text("")
    params = {"dir": str(tmp_path)}
    dag = make_dag(
        [
            task("good", "test.count", params={**params, "key": "good"}),
            task("bad", "test.fail_while_flag", deps=("good",), params={**params, "key": "bad"}),
            task("after", "test.count", deps=("good", "bad"), params={**params, "key": "after"}),
        ],
        name="retry_me",
        tenant="t-retry",
    )
    first = cluster.runner.submit(dag)
    assert first.wait(timeout=30).status == "failed"
    # When the cause is fixed and the run is retried from another process
    (tmp_path / "broken").unlink()
    proc = cli(cluster.env, "retry", first.run_id, "--timeout", "60")
    # Then the new run succeeds without running 'good' again
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new_id = proc.stdout.split()[1].rstrip(":")
    assert f"Run {new_id}: retry of {first.run_id}" in proc.stdout
    assert "Status: success" in proc.stdout
    assert lines(tmp_path / "calls-good.txt") == 1
    assert lines(tmp_path / "calls-bad.txt") == 2 and lines(tmp_path / "calls-after.txt") == 1
    new = dagflow.get_run(new_id, settings=cluster.settings)
    assert new.outputs()["good"] == {"key": "good"}
    status = new.status()
    assert status.labels["retry_of"] == first.run_id and status.counts["ok"] == 3
    # And the event log is honest: good is reused, not run
    events = cluster.events(new_id)
    start = next(e for e in events if e["event"] == "dag_start")
    assert start["retry_of"] == first.run_id
    reused = [e for e in events if e["event"] == "task_reused"]
    assert [(e["task_id"], e["reused_from"]) for e in reused] == [("good", first.run_id)]
    assert count(events, "task_start", "good") == 0 and count(events, "task_ok", "good") == 0
    assert count(events, "task_ok", "bad") == 1 and count(events, "task_ok", "after") == 1
    # And a succeeded run has nothing to retry
    again = cli(cluster.env, "retry", new_id)
    assert again.returncode == 3 and "nothing to retry" in again.stderr


def _context_dag(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ntenant_id: t-ctx\nparams:\n  day: null\n  limit: 5\n"
        f"tasks:\n  - id: show\n    workflow_ref: test.context\n"
        f"    params: {{dir: {json.dumps(str(tmp_path))}}}\n"
    )
    return path


def test_params_and_the_context_reach_a_plain_run(cluster: Cluster, tmp_path: Path) -> None:
    dag = dagflow.load_dag(_context_dag(tmp_path, "ctx_plain"), cluster.settings)
    handle = cluster.runner.submit(dag, params={"day": "2026-01-05"})
    assert handle.wait(timeout=30).ok
    ctx = handle.outputs()["show"]["ctx"]
    assert ctx == {
        "run_id": handle.run_id,
        "dag_name": "ctx_plain",
        "tenant_id": "t-ctx",
        "task_id": "show",
        "attempt": 1,
        "fence": 1,
        "params": {"day": "2026-01-05", "limit": 5},
        "schedule_id": None,
        "scheduled_minute": None,
        "retry_of": None,
    }
    # And dag_start names the run's params
    start = next(e for e in cluster.events(handle.run_id) if e["event"] == "dag_start")
    assert start["params"] == {"day": "2026-01-05", "limit": 5}


def test_the_context_of_a_scheduled_run(cluster: Cluster, tmp_path: Path) -> None:
    # Given a firing sent as Beat sends it, with the schedule's params
    path = _context_dag(tmp_path, "ctx_sched")
    firing = Firing(
        schedule_id="nightly",
        dag=str(path),
        tenant="t-sched",
        scheduled_minute="2026-11-26T10:05:00Z",
        run_id=uuid.uuid4().hex,
        params={"limit": 9},
    )
    cluster.runner.app.send_task(START_TASK, args=(firing.model_dump(),))
    # Then the workflow sees the schedule, the minute, the tenant and the params
    store = cluster.runner.runtime.store
    deadline = time.monotonic() + 20
    while store.snapshot(firing.run_id) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    handle = dagflow.get_run(firing.run_id, settings=cluster.settings)
    assert handle.wait(timeout=30).ok
    ctx = handle.outputs()["show"]["ctx"]
    assert (ctx["schedule_id"], ctx["scheduled_minute"]) == ("nightly", "2026-11-26T10:05:00Z")
    assert ctx["tenant_id"] == "t-sched" and ctx["params"] == {"day": None, "limit": 9}
    assert ctx["run_id"] == firing.run_id and ctx["fence"] == 1


def embedded_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_", "STATE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        DAGFLOW_WORKFLOWS=TEST_WORKFLOWS,
        ORCH_EVENTS_PATH=str(tmp_path / "events.jsonl"),
        STATE_STORE_PATH=str(tmp_path / "state.jsonl"),
    )
    return env


def test_params_on_the_command_line(tmp_path: Path) -> None:
    path = _context_dag(tmp_path, "ctx_cli")
    env = embedded_env(tmp_path)
    ok = cli(env, "run", str(path), "--quiet", "--param", "day=2026-01-05", "--param", "limit=7")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    ctx = json.loads((tmp_path / "ctx-show.json").read_text())
    assert ctx["params"] == {"day": "2026-01-05", "limit": 7}
    assert ctx["schedule_id"] is None and ctx["attempt"] == 1
    bad = cli(env, "run", str(path), "--param", "nope=1")
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1
    assert str(path) in bad.stderr and "params.nope" in bad.stderr
    malformed = cli(env, "run", str(path), "--param", "novalue")
    assert malformed.returncode == 2 and "key=value" in malformed.stderr


def test_an_embedded_run_that_times_out_is_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(
        "name: slow\ntenant_id: t\ntasks:\n"
        "  - {id: nap, workflow_ref: test.sleep, params: {seconds: 5}}\n"
        "  - {id: later, workflow_ref: test.echo, depends_on: [nap]}\n"
    )
    proc = cli(embedded_env(tmp_path), "run", str(path), "--quiet", "--timeout", "1")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert (
        "gave up after 1 s" in proc.stderr and "it is cancelled (2 tasks cancelled)" in proc.stderr
    )
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    done = [e for e in events if e["event"] == "dag_done"]
    assert len(done) == 1 and done[0]["status"] == "cancelled" and done[0]["tasks_cancelled"] == 2
    assert {e["task_id"] for e in events if e["event"] == "task_cancel"} == {"nap", "later"}
