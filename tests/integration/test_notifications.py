"""Notifications and deadlines with real parts: a private redis-server, real ``celery -A
dagflow worker`` processes, a real HTTP server receiving the webhooks, and the embedded mode.

Leases are 2 s and sweeps 0.5 s (:mod:`tests.support.cluster`); a failed delivery is tried
again after 0.2 s, doubling, up to 3 attempts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.client.runner import Runner
from dagflow.execution.deadlines import sweep_deadlines
from tests.support.cluster import Cluster, count
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT, dagflow_cli
from tests.support.waiting import wait_for
from tests.support.webhook import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOTIFY_ENV = {
    "DAGFLOW_NOTIFY_RETRY_S": "0.2",
    "DAGFLOW_NOTIFY_ATTEMPTS": "3",
    "DAGFLOW_NOTIFY_TIMEOUT_S": "2",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver, not yet listening (a test starts it)."""
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def hook_dir(tmp_path: Path) -> Path:
    """Where the hook workflows leave their traces."""
    path = tmp_path / "hooks"
    path.mkdir()
    return path


def make_cluster(root: Path, receiver: Receiver, hook_dir: Path) -> Cluster:
    return Cluster(
        root,
        extra_env={**NOTIFY_ENV, "HOOK_URL": receiver.url, "DAGFLOW_TEST_HOOK_DIR": str(hook_dir)},
    )


def hook_calls(hook_dir: Path) -> list[dict[str, Any]]:
    path = hook_dir / "hooks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_failed_run_tells_its_hooks_and_webhook_once_and_a_failing_hook_changes_nothing(
    tmp_path: Path, receiver: Receiver, hook_dir: Path
) -> None:
    receiver.start()
    cluster = make_cluster(tmp_path, receiver, hook_dir)
    try:
        cluster.worker("a", concurrency=2)
        # Given a DAG whose task fails, with a recording hook, a failing hook and a webhook
        dag = make_dag(
            [task("extract", "test.fail", params={"message": "the source is down"})],
            name="nightly_report",
            tenant="acme",
            on_failure=["test.hook_record", "test.hook_fail"],
            notify=[{"webhook_env": "HOOK_URL", "events": ["failed", "deadline_missed"]}],
        )
        # When it runs
        handle = cluster.runner.submit(dag)
        assert handle.wait(timeout=30).status == "failed"
        run_id = handle.run_id
        # Then the webhook gets one Slack-compatible POST, with the summary
        wait_for(lambda: receiver.bodies(run_id), 15, "the webhook's POST")
        # and the failing hook gives up after its 3 attempts
        wait_for(
            lambda: count(cluster.events(run_id), "hook_failed") == 3, 20, "3 hook_failed events"
        )
        (body,) = receiver.bodies(run_id)
        assert body["text"].startswith(":x: dagflow run failed: nightly_report (tenant acme)")
        assert "Failed: extract: RunnerError: Task 'extract' failed after 1 attempt" in body["text"]
        assert body["attachments"][0]["fields"][0] == {
            "title": "DAG",
            "value": "nightly_report",
            "short": True,
        }
        # the recording hook was called once, with the run's summary as params
        (call,) = hook_calls(hook_dir)
        assert (call["event"], call["run_id"], call["dag_name"], call["tenant_id"]) == (
            "failed",
            run_id,
            "nightly_report",
            "acme",
        )
        assert call["status"] == "failed"
        assert call["failed_tasks"][0]["task_id"] == "extract"
        assert "ValueError: the source is down" in call["failed_tasks"][0]["error"]
        assert call["commands"]["status"] == f"dagflow status {run_id}"
        assert call["commands"]["retry"] == f"dagflow retry {run_id}"
        # the failing hook did not change the run's status, and status shows it
        status = handle.status()
        assert status.status == "failed"
        states = {(n.kind, n.target): (n.state, n.attempts) for n in status.notices}
        assert states == {
            ("on_failure", "test.hook_record"): ("sent", 1),
            ("on_failure", "test.hook_fail"): ("failed", 3),
            ("webhook", "HOOK_URL"): ("sent", 1),
        }
        events = cluster.events(run_id)
        sent = [(e["kind"], e["target"]) for e in events if e["event"] == "notification_sent"]
        assert sorted(sent) == [("on_failure", "test.hook_record"), ("webhook", "HOOK_URL")]
        failed = [e for e in events if e["event"] == "hook_failed"]
        assert [e["will_retry"] for e in failed] == [True, True, False]
        assert failed[0]["error"] == "RuntimeError: the pager is down"
        assert all(
            (e["dag_name"], e["tenant_id"], e["kind"], e["trigger"])
            == ("nightly_report", "acme", "on_failure", "failed")
            for e in failed
        )
        # `dagflow status` prints the notifications
        proc = dagflow_cli(cluster.env, "status", run_id)
        assert proc.returncode == 0, proc.stderr
        assert "Notifications:\n" in proc.stdout
        assert "  on_failure test.hook_fail (failed): failed, 3 attempts\n" in proc.stdout
        assert "      RuntimeError: the pager is down\n" in proc.stdout
        assert "  webhook HOOK_URL (failed): sent, 1 attempt\n" in proc.stdout
        # and nothing more is delivered later (each was told once)
        threading.Event().wait(1.0)  # two more sweeps
        assert len(receiver.bodies(run_id)) == 1 and len(hook_calls(hook_dir)) == 1
        # the secret URL is in no event
        assert receiver.url not in json.dumps(events)
    finally:
        cluster.close()


def test_a_successful_run_tells_a_webhook_only_when_asked(
    tmp_path: Path, receiver: Receiver, hook_dir: Path
) -> None:
    receiver.start()
    cluster = make_cluster(tmp_path, receiver, hook_dir)
    try:
        cluster.worker("a", concurrency=2)
        # Given two DAGs that succeed: one webhook on failures only, one also on success
        quiet = make_dag(
            [task("a")],
            name="quiet",
            notify=[{"webhook_env": "HOOK_URL"}],
            on_failure=["test.hook_record"],
        )
        loud = make_dag(
            [task("a")],
            name="loud",
            notify=[{"webhook_env": "HOOK_URL", "events": ["success"]}],
            on_success=["test.hook_record"],
        )
        quiet_run = cluster.runner.submit(quiet)
        loud_run = cluster.runner.submit(loud)
        assert quiet_run.wait(timeout=30).status == "success"
        assert loud_run.wait(timeout=30).status == "success"
        # Then the one that asked is told of its success, once, with its on_success hook
        wait_for(lambda: receiver.bodies(loud_run.run_id), 15, "the success POST")
        (body,) = receiver.bodies(loud_run.run_id)
        assert body["text"].startswith(":white_check_mark: dagflow run succeeded: loud")
        wait_for(lambda: hook_calls(hook_dir), 15, "the on_success hook")
        # and the other is never told: no POST and no notice, even after several sweeps
        assert quiet_run.status().notices == ()
        threading.Event().wait(2.0)  # four sweeps of 0.5 s
        assert receiver.bodies(quiet_run.run_id) == []
        assert [c["run_id"] for c in hook_calls(hook_dir)] == [loud_run.run_id]
    finally:
        cluster.close()


def test_a_webhook_whose_receiver_was_down_is_delivered_when_it_is_back(
    tmp_path: Path, receiver: Receiver, hook_dir: Path
) -> None:
    # Given a receiver that is down (nothing listens on its port) and a run that fails
    cluster = Cluster(
        tmp_path,
        extra_env={
            **NOTIFY_ENV,
            "DAGFLOW_NOTIFY_ATTEMPTS": "10",
            "HOOK_URL": receiver.url,
            "DAGFLOW_TEST_HOOK_DIR": str(hook_dir),
        },
    )
    try:
        cluster.worker("a", concurrency=2)
        dag = make_dag([task("a", "test.fail")], notify=[{"webhook_env": "HOOK_URL"}])
        handle = cluster.runner.submit(dag)
        assert handle.wait(timeout=30).status == "failed"
        # When the first attempts fail
        wait_for(
            lambda: count(cluster.events(handle.run_id), "notification_failed") >= 2,
            20,
            "two failed attempts",
        )
        (notice,) = handle.status().notices
        assert notice.state == "retrying" and notice.error is not None
        assert notice.error.startswith("WebhookError: no answer:")
        # and the receiver comes back
        receiver.start()
        # Then the webhook is delivered, once
        wait_for(lambda: receiver.bodies(handle.run_id), 30, "the POST after the receiver is up")
        wait_for(
            lambda: handle.status().notices[0].state == "sent", 10, "the notice settled as sent"
        )
        threading.Event().wait(1.0)
        assert len(receiver.bodies(handle.run_id)) == 1
        events = cluster.events(handle.run_id)
        failures = [e for e in events if e["event"] == "notification_failed"]
        assert all(e["will_retry"] and e["kind"] == "webhook" for e in failures)
        assert count(events, "notification_sent") == 1
        assert receiver.url not in json.dumps(events)
    finally:
        cluster.close()


def test_a_worker_killed_between_dag_done_and_its_hooks_still_tells_them(
    tmp_path: Path, receiver: Receiver, hook_dir: Path
) -> None:
    receiver.start()
    cluster = make_cluster(tmp_path, receiver, hook_dir)
    try:
        # Given two workers, and a DAG whose on_failure hook SIGKILLs the worker that calls
        # it first (its main process and pool: after dag_done, before any notice is told)
        for name in ("a", "b"):
            cluster.worker(name, concurrency=1, DAGFLOW_TEST_KILL_GROUP="1")
        dag = make_dag(
            [task("a", "test.fail")],
            on_failure=["test.hook_kill_once"],
            notify=[{"webhook_env": "HOOK_URL"}],
        )
        handle = cluster.runner.submit(dag)
        assert handle.wait(timeout=30).status == "failed"
        wait_for((hook_dir / "killed.txt").exists, 15, "the hook killed its worker")
        # Then the surviving worker's sweeper tells the hook and the webhook
        wait_for(lambda: hook_calls(hook_dir), 30, "the hook told by the other worker")
        wait_for(lambda: receiver.bodies(handle.run_id), 30, "the webhook told by the other worker")
        dead = [n for n, p in cluster.workers.items() if p.poll() is not None]
        assert len(dead) == 1, "exactly one worker was killed"
        (call,) = hook_calls(hook_dir)
        assert call["run_id"] == handle.run_id and call["status"] == "failed"
        assert len(receiver.bodies(handle.run_id)) == 1
        status = handle.status()
        assert status.status == "failed"
        assert {n.target: n.state for n in status.notices} == {
            "test.hook_kill_once": "sent",
            "HOOK_URL": "sent",
        }
        assert count(cluster.events(handle.run_id), "dag_done") == 1
    finally:
        cluster.close()


def test_a_late_run_gets_exactly_one_deadline_missed_with_several_sweepers(
    tmp_path: Path, receiver: Receiver, hook_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.start()
    cluster = make_cluster(tmp_path, receiver, hook_dir)
    # this test's process sweeps deadlines too (a third sweeper, without the sweep lock):
    # what it claims it delivers itself
    monkeypatch.setenv("HOOK_URL", receiver.url)
    monkeypatch.setenv("DAGFLOW_TEST_HOOK_DIR", str(hook_dir))
    stop = threading.Event()
    try:
        # Given two workers (each runs a sweeper) and a run that outlives its 1 s deadline
        cluster.worker("a", concurrency=2)
        cluster.worker("b", concurrency=2)
        dag = make_dag(
            [task("slow", "test.sleep", params={"seconds": 4.0}), task("after", deps=("slow",))],
            name="nightly_report",
            tenant="acme",
            deadline_s=1,
            on_deadline_missed=["test.hook_record"],
            notify=[{"webhook_env": "HOOK_URL", "events": ["deadline_missed"]}],
        )
        rt = cluster.runner.runtime
        claims: list[int] = []

        def sweep() -> None:
            while not stop.wait(0.05):
                claims.append(sweep_deadlines(cluster.runner.app, rt))

        thread = threading.Thread(target=sweep, daemon=True)
        handle = cluster.runner.submit(dag)
        thread.start()
        # When the deadline passes while the task still runs
        wait_for(
            lambda: count(cluster.events(handle.run_id), "dag_deadline_missed"),
            10,
            "dag_deadline_missed",
        )
        # Then the run keeps running and ends normally
        result = handle.wait(timeout=30)
        assert (result.status, result.succeeded) == ("success", 2)
        threading.Event().wait(1.5)  # three more sweeps of every sweeper
        stop.set()
        thread.join(5)
        events = cluster.events(handle.run_id)
        # with exactly one dag_deadline_missed, one hook call and one POST
        (missed,) = [e for e in events if e["event"] == "dag_deadline_missed"]
        assert (missed["dag_name"], missed["tenant_id"], missed["deadline_s"]) == (
            "nightly_report",
            "acme",
            1.0,
        )
        assert 1.0 <= missed["duration_s"] < 4.0
        wait_for(lambda: hook_calls(hook_dir) and receiver.bodies(handle.run_id), 10, "told")
        (call,) = hook_calls(hook_dir)
        assert (call["event"], call["status"], call["deadline_s"]) == (
            "deadline_missed",
            "running",
            1.0,
        )
        assert call["commands"]["cancel"] == f"dagflow cancel {handle.run_id}"
        (body,) = receiver.bodies(handle.run_id)
        assert body["text"].startswith(":warning: dagflow run missed its deadline")
        assert sum(claims) <= 1  # the test's sweeper won at most once, and then alone
        assert count(events, "dag_done") == 1
    finally:
        stop.set()
        cluster.close()


def test_the_embedded_mode_tells_hooks_webhooks_and_deadlines(
    embedded_runner: Runner, receiver: Receiver, hook_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded worker runs in this process: hooks and webhooks read its environment
    receiver.start()
    monkeypatch.setenv("HOOK_URL", receiver.url)
    monkeypatch.setenv("DAGFLOW_TEST_HOOK_DIR", str(hook_dir))
    dag = make_dag(
        [task("a", "test.fail")],
        name="embedded_alerts",
        on_failure=["test.hook_record"],
        notify=[{"webhook_env": "HOOK_URL"}],
    )
    handle = embedded_runner.submit(dag)
    # When the run fails, then the wait returns once both were told (the process may exit)
    assert handle.wait(timeout=30).status == "failed"
    assert len(receiver.bodies(handle.run_id)) == 1
    assert [c["run_id"] for c in hook_calls(hook_dir)] == [handle.run_id]
    assert {n.state for n in handle.status().notices} == {"sent"}
    # And a run that outlives its deadline gets one dag_deadline_missed from the in-process
    # sweeper (every DAGFLOW_SWEEP_S, 5 s by default) and keeps running
    late = make_dag(
        [task("slow", "test.sleep", params={"seconds": 7.0})],
        name="embedded_late",
        deadline_s=0.5,
        on_deadline_missed=["test.hook_record"],
    )
    slow = embedded_runner.submit(late)
    assert slow.wait(timeout=30).status == "success"
    missed = [
        e
        for e in embedded_runner.runtime.events.read()
        if e.get("run_id") == slow.run_id and e["event"] == "dag_deadline_missed"
    ]
    assert len(missed) == 1
    wait_for(lambda: len(hook_calls(hook_dir)) == 2, 10, "the deadline hook")


@pytest.mark.parametrize(
    ("yaml_tail", "line"),
    [
        (
            "deadline_s: soon\n",
            "field 'deadline_s': DagValidationError: expected a number of seconds greater "
            "than 0, got the string 'soon'",
        ),
        (
            "on_failure: [page_ownr]\n",
            "field 'on_failure': DagValidationError: unknown workflow 'page_ownr'",
        ),
        (
            "notify: [{webhook_env: 'https://hooks.example/x'}]\n",
            "field 'notify.0.webhook_env': DagValidationError: expected the name of an "
            "environment variable holding the URL, not the URL itself",
        ),
        (
            "notify: [{webhook_env: SLACK, events: [failure]}]\n",
            "field 'notify.0.events': DagValidationError: unknown event 'failure' (did you "
            "mean 'failed'?)",
        ),
    ],
)
def test_plan_refuses_a_bad_alert_field_with_one_line_and_exit_2(
    tmp_path: Path, yaml_tail: str, line: str
) -> None:
    dag = tmp_path / "bad.yaml"
    dag.write_text(
        "name: n\ntenant_id: t\ntasks:\n  - {id: a, workflow_ref: inbox_drive_sweep}\n" + yaml_tail
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    proc = dagflow_cli(env, "plan", str(dag))
    assert proc.returncode == 2, proc.stderr
    (printed,) = proc.stderr.splitlines()
    assert printed.startswith(f"{dag}, {line}")


def test_validate_refuses_a_schedule_hook_that_is_not_registered(tmp_path: Path) -> None:
    folder = tmp_path / "schedules"
    folder.mkdir()
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "x.yaml").write_text("name: x\n")
    entry = folder / "nightly.yaml"
    entry.write_text(
        "- {id: nightly, cron: '0 2 * * *', dag: dags/x.yaml, tenant: acme,\n"
        "   deadline_s: 900, on_failure: [nobody]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-m", "dagflow", "validate", str(entry)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (printed,) = proc.stderr.splitlines()
    assert printed.startswith(
        f"{entry}, schedule 'nightly', field 'on_failure': ScheduleError: unknown workflow 'nobody'"
    )
