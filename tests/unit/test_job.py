"""The Job model's transitions and backoff (pure: time is a parameter)."""

from __future__ import annotations

from typing import Any

import pytest

from dagflow.errors import ScheduleError
from dagflow.execution.runtime import RunEnded
from dagflow.scheduling.firing import Firing, finished_event
from dagflow.scheduling.job import (
    Job,
    JobStatus,
    backoff_s,
    mark_ended,
    mark_failed,
    mark_rerun,
    mark_running,
    parse_status,
    retry_run_id,
)
from dagflow.scheduling.schedules import parse_schedules

BASE, CAP = 30.0, 600.0


def new_job(max_retries: int = 0) -> Job:
    return Job(
        id="j1",
        dag_path="dags/d.yaml",
        tenant_id="acme",
        schedule_id="s1",
        enqueued_at=100.0,
        max_retries=max_retries,
        run_id="r1",
    )


@pytest.mark.parametrize(
    ("tries", "expected"),
    [(0, 0.0), (1, 30.0), (2, 60.0), (3, 120.0), (5, 480.0), (6, 600.0), (1000, 600.0)],
)
def test_backoff_doubles_from_base_and_is_capped(tries: int, expected: float) -> None:
    assert backoff_s(tries, BASE, CAP) == expected


def test_a_job_that_succeeds_first_time() -> None:
    job = new_job()
    running = mark_running(job, "r1", now=110.0)
    assert running is not None and running.status == JobStatus.RUNNING
    assert running.runs == ("r1",) and running.tries == 1 and running.updated_at == 110.0
    done = mark_ended(running, "r1", "success", 120.0, BASE, CAP)
    assert done is not None and done.status == JobStatus.SUCCESS and done.last_run_id == "r1"


def test_a_failed_try_with_retries_left_goes_retry_then_running_then_success() -> None:
    # Given a job with one retry whose first run failed
    job = mark_running(new_job(max_retries=1), "r1", 110.0)
    assert job is not None
    retry = mark_ended(job, "r1", "failed", 120.0, BASE, CAP)
    # Then it waits for try 2, under a run id fixed in advance
    assert retry is not None and retry.status == JobStatus.RETRY
    assert retry.retry_at == 150.0 and retry.run_id == retry_run_id("j1", 2) == "j1-2"
    # When try 2 starts and succeeds
    second = mark_running(retry, "j1-2", 151.0)
    assert second is not None and second.status == JobStatus.RUNNING
    assert second.runs == ("r1", "j1-2") and second.retry_at is None
    done = mark_ended(second, "j1-2", "success", 160.0, BASE, CAP)
    assert done is not None and done.status == JobStatus.SUCCESS and done.tries == 2


def test_retries_exhausted_end_failed() -> None:
    job = mark_running(new_job(max_retries=1), "r1", 110.0)
    assert job is not None
    retry = mark_ended(job, "r1", "failed", 120.0, BASE, CAP)
    assert retry is not None
    second = mark_running(retry, "j1-2", 151.0)
    assert second is not None
    failed = mark_ended(second, "j1-2", "failed", 160.0, BASE, CAP)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.retry_at is None and failed.last_status == "failed"


def test_a_rerun_gives_a_failed_job_one_more_try_now() -> None:
    running = mark_running(new_job(), "r1", 110.0)
    assert running is not None
    failed = mark_ended(running, "r1", "failed", 120.0, BASE, CAP)
    assert failed is not None and failed.status == JobStatus.FAILED
    rerun = mark_rerun(failed, 500.0)
    assert rerun is not None
    assert (rerun.status, rerun.retry_at, rerun.run_id) == (JobStatus.RETRY, 500.0, "j1-2")
    # The new try counts: failing again ends the job FAILED (no retries left)
    second = mark_running(rerun, "j1-2", 501.0)
    assert second is not None
    again = mark_ended(second, "j1-2", "failed", 502.0, BASE, CAP)
    assert again is not None and again.status == JobStatus.FAILED and again.tries == 2


def test_only_a_failed_job_that_ran_can_be_rerun() -> None:
    assert mark_rerun(new_job(), 1.0) is None  # pending
    never_ran = mark_failed(new_job(), "its DAG file is gone", 1.0)
    assert never_ran is not None and mark_rerun(never_ran, 2.0) is None
    running = mark_running(new_job(), "r1", 1.0)
    assert running is not None and mark_rerun(running, 2.0) is None


def test_a_cancelled_run_ends_its_job_failed_without_retry() -> None:
    job = mark_running(new_job(max_retries=3), "r1", 110.0)
    assert job is not None
    ended = mark_ended(job, "r1", "cancelled", 120.0, BASE, CAP)
    assert ended is not None and ended.status == JobStatus.FAILED


def test_an_end_seen_before_the_start_is_not_undone_by_the_late_start() -> None:
    # Given a fast run whose end was recorded before its start
    ended = mark_ended(new_job(), "r1", "success", 120.0, BASE, CAP)
    assert ended is not None and ended.runs == ("r1",)
    # Then the late start changes nothing
    assert mark_running(ended, "r1", 121.0) is None


def test_events_of_other_runs_or_ended_jobs_do_not_apply() -> None:
    job = new_job()
    assert mark_running(job, "other", 110.0) is None
    assert mark_ended(job, "other", "success", 110.0, BASE, CAP) is None
    running = mark_running(job, "r1", 110.0)
    assert running is not None and mark_running(running, "r1", 111.0) is None
    done = mark_ended(running, "r1", "success", 120.0, BASE, CAP)
    assert done is not None
    assert mark_ended(done, "r1", "failed", 130.0, BASE, CAP) is None
    assert mark_failed(done, "boom", 130.0) is None


def test_mark_failed_keeps_why() -> None:
    failed = mark_failed(new_job(), "DAG file missing", 110.0)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.error == "DAG file missing"


def test_parse_status_any_case_and_one_line_error() -> None:
    assert parse_status("retry") is JobStatus.RETRY
    assert parse_status("SUCCESS") is JobStatus.SUCCESS
    with pytest.raises(ValueError, match="expected one of pending, running"):
        parse_status("done")


def test_to_dict_has_tries_and_last_run() -> None:
    job = mark_running(new_job(), "r1", 110.0)
    assert job is not None
    data = job.to_dict()
    assert data["status"] == "RUNNING" and data["tries"] == 1 and data["last_run_id"] == "r1"


def new_firing(**extra: Any) -> Firing:
    return Firing(
        schedule_id="s1",
        dag="dags/d.yaml",
        tenant="acme",
        scheduled_minute="2026-11-26T10:05:00Z",
        run_id="r1",
        job_id="j1",
        **extra,
    )


def test_a_firing_and_its_job_round_trip() -> None:
    firing = new_firing(params={"n": 1}, max_retries=2)
    job = firing.job(100.0)
    assert job.status == JobStatus.PENDING and job.max_retries == 2 and job.run_id == "r1"
    assert Firing.from_job(job) == firing
    assert firing.labels["job_id"] == "j1"


def test_a_scheduled_runs_end_is_a_run_finished_event_named_from_its_labels() -> None:
    firing = new_firing()
    ended = RunEnded("r1", "d", "acme", "failed", 2.5, firing.labels)
    event = finished_event(ended)
    assert event is not None and event.pop("timestamp")
    assert event == {
        "event": "run_finished",
        "schedule_id": "s1",
        "tenant_id": "acme",
        "dag": "dags/d.yaml",
        "run_id": "r1",
        "scheduled_minute": "2026-11-26T10:05:00Z",
        "status": "failed",
        "duration_s": 2.5,
    }
    assert finished_event(RunEnded("r2", "d", "acme", "success", 1.0, {})) is None


@pytest.mark.parametrize("value", [-1, "2", 1.5, True])
def test_schedule_max_retries_must_be_a_non_negative_integer(value: object) -> None:
    entry = {"id": "s", "cron": "* * * * *", "dag": "d.yaml", "tenant": "t", "max_retries": value}
    with pytest.raises(ScheduleError) as info:
        parse_schedules(entry)
    (line,) = info.value.lines()
    assert "field 'max_retries'" in line and "an integer >= 0" in line


def test_schedule_max_retries_defaults_to_zero() -> None:
    (schedule,) = parse_schedules({"id": "s", "cron": "* * * * *", "dag": "d", "tenant": "t"})
    assert schedule.max_retries == 0
