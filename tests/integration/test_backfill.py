"""``dagflow backfill`` against a real Redis, real workers and a live ``celery -A dagflow beat``.

Each test is a deployment root (``dags/``, ``schedules/``) on an empty database of the
session's private Redis. The DAG runs ``test.context_log``, which appends each run's
``scheduled_minute`` to ``contexts.jsonl``, so a test sees which minutes ran and how often.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dagflow.scheduling.job import JobStatus
from dagflow.scheduling.schedules import minute_key
from dagflow.stores.minute_claims import RedisMinuteClaims
from dagflow.stores.redis_jobs import RedisJobStore
from tests.integration.test_scheduler_redis import Deployment
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def dag(root: Path, seconds: float) -> str:
    return (
        "name: hourly_dag\ntenant_id: acme\ntasks:\n"
        "  - id: log\n    workflow_ref: test.context_log\n"
        f"    params: {{dir: '{root}', seconds: {seconds}}}\n"
    )


@pytest.fixture
def deploy(tmp_path: Path, scratch_redis: str) -> Iterator[Deployment]:
    (tmp_path / "dags").mkdir()
    (tmp_path / "schedules").mkdir()
    deployment = Deployment(tmp_path, scratch_redis)
    deployment.env.update(
        DAGFLOW_WORKFLOWS="tests.support.workflows", DAGFLOW_EVENTS="file",
        SCHED_MAX_PARALLEL="20",
    )  # fmt: skip
    yield deployment
    deployment.stop()


def schedule(deploy: Deployment, seconds: float = 0.0, extra: str = "") -> None:
    (deploy.root / "dags" / "hourly.yaml").write_text(dag(deploy.root, seconds))
    deploy.schedule(
        "hourly.yaml",
        '- id: hourly\n  cron: "0 * * * *"\n  dag: dags/hourly.yaml\n  tenant: acme\n' + extra,
    )


def backfill(deploy: Deployment, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagflow", "backfill", *args],
        cwd=deploy.root, env=deploy.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def finished(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    return out


def ran(deploy: Deployment) -> list[dict[str, Any]]:
    path = deploy.root / "contexts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def hourly_jobs(deploy: Deployment) -> list[Any]:
    store = RedisJobStore(deploy.broker)
    try:
        return store.jobs(schedule="hourly", limit=1000)
    finally:
        store.close()


def test_three_days_start_72_jobs_once_twice_run_and_alongside_beat(deploy: Deployment) -> None:
    # Given an hourly schedule that catches up every missed hour of the last 6, last run 80 h
    # ago (Beat will make up 6 hours of the window the backfills cover too)
    schedule(deploy, extra="  catchup: all\n  catchup_window: 6h\n")
    now = datetime.now(UTC)
    top = now.replace(minute=0, second=0, microsecond=0)
    start = top - timedelta(hours=71)
    expected = [minute_key(top - timedelta(hours=h)) for h in range(71, -1, -1)]
    claims = RedisMinuteClaims.from_url(deploy.broker)
    claims.claim_many([("hourly", minute_key(top - timedelta(hours=80)), "an-old-run")])
    window = ["hourly", "--from", minute_key(start), "--to", now.isoformat()]

    # When a dry run lists the window first
    dry = finished(backfill(deploy, *window, "--dry-run", "--json"))
    # Then it lists the 72 cron times, in order, and starts nothing
    planned = json.loads(dry)
    assert [m["minute"] for m in planned["minutes"]] == expected
    assert {m["state"] for m in planned["minutes"]} == {"planned"}
    assert planned["backfill_id"] is None and hourly_jobs(deploy) == []

    # When a worker and a live Beat run, and the same backfill is run twice at once
    deploy.worker(concurrency=4)
    deploy.start(sys.executable, "-m", "celery", "-A", "dagflow", "beat", "-l", "info")
    both = [backfill(deploy, *window, "--json"), backfill(deploy, *window, "--json")]
    results = [json.loads(finished(proc)) for proc in both]

    # Then every minute of the window has one job in all, and each ran exactly once
    def window_jobs() -> list[Any]:
        return [j for j in hourly_jobs(deploy) if j.scheduled_minute in expected]

    wait_for(
        lambda: len(window_jobs()) == 72 and all(j.status.ended for j in window_jobs()),
        timeout=90,
        what="72 window jobs ended",
    )
    jobs = window_jobs()
    assert sorted(j.scheduled_minute for j in jobs) == expected
    assert {j.status for j in jobs} == {JobStatus.SUCCESS}
    minutes = collections.Counter(r["scheduled_minute"] for r in ran(deploy))
    assert sorted(minutes) == expected and set(minutes.values()) == {1}
    started = [m["minute"] for r in results for m in r["minutes"] if m["state"] == "started"]
    assert len(started) == len(set(started))
    # Beat's catch-up (catchup: all, 6h) may take some of the latest hours, or none when the
    # backfills claim them before Beat's first tick: either way each minute ran once
    by_beat = [j for j in jobs if j.scheduled_minute not in started]
    assert len(by_beat) <= 7, "Beat made up only hours of its 6 h window"
    assert all(j.scheduled_minute >= minute_key(top - timedelta(hours=6)) for j in by_beat)

    # And a third run, later, starts nothing: every minute is listed as claimed
    again = json.loads(finished(backfill(deploy, *window, "--json")))
    assert [m["state"] for m in again["minutes"]] == ["skipped"] * 72
    assert len(window_jobs()) == 72


def test_max_active_bounds_the_runs_at_once_and_cancel_stops_the_rest(
    deploy: Deployment,
) -> None:
    # Given a DAG whose run takes 1.5 s and a worker with room for 4 at once
    schedule(deploy, seconds=1.5)
    deploy.worker(concurrency=4)
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = top - timedelta(hours=12), top
    # When a 12-hour backfill may run 2 at once
    out = finished(backfill(deploy, "hourly", "--from", minute_key(start), "--to",
                            minute_key(end), "--max-active", "2"))  # fmt: skip
    assert "12 jobs started, 0 minutes already claimed" in out
    backfill_id = out.split()[1]
    # Then, while they run, never more than 2 run at once, oldest first
    wait_for(lambda: len(ran(deploy)) >= 4, timeout=30)
    # And when it is cancelled as a whole, the waiting ones never start
    cancel = subprocess.run(
        [sys.executable, "-m", "dagflow", "backfill", "--cancel", backfill_id],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.startswith(f"Backfill {backfill_id} cancelled: ")
    wait_for(lambda: all(j.status.ended for j in hourly_jobs(deploy)), timeout=30)
    jobs = hourly_jobs(deploy)
    statuses = collections.Counter(j.status for j in jobs)
    assert len(jobs) == 12 and statuses[JobStatus.FAILED] >= 6, statuses
    minutes = [r["scheduled_minute"] for r in ran(deploy)]
    assert minutes == sorted(minutes) and len(minutes) <= 7, minutes
    assert deploy.peak_running() <= 2
    # Cancelling again is harmless
    twice = subprocess.run(
        [sys.executable, "-m", "dagflow", "backfill", "--cancel", backfill_id],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert twice.returncode == 0 and "0 runs cancelled" in twice.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["hourly", "--from", "2026-01-02", "--to", "2026-01-01"],
         "schedule 'hourly', field 'to': ScheduleError: --to must be after --from"),
        (["hourly", "--from", "2026-01-01", "--to", "2999-01-01"],
         "schedule 'hourly', field 'to': ScheduleError: --to 2999-01-01T00:00:00Z is after now"),
        (["hourly", "--from", "yesterday", "--to", "2026-01-01"],
         "field 'from': ScheduleError: expected a date (2026-01-01)"),
        (["nope", "--from", "2026-01-01", "--to", "2026-01-02"],
         "schedule 'nope': ScheduleError: unknown schedule (known: hourly)"),
        (["hourly", "--from", "2000-01-01", "--to", "2026-01-01"],
         "field 'from': ScheduleError: the window is longer than 366 days"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(deploy: Deployment, args: list[str], line: str) -> None:
    schedule(deploy)
    proc = subprocess.run(
        [sys.executable, "-m", "dagflow", "backfill", *args],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert line in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
