"""Scheduled jobs against a real Redis and real Celery workers (subprocesses).

Each test is a deployment root (``dags/``, ``schedules/``, a workflow module) on an empty
database of the session's private Redis, with ``dagflow schedule --once`` as a subprocess
and ``dagflow jobs`` read from another process. Job retries wait ``DAGFLOW_JOB_RETRY_BASE_S``
(short here) and are started by the workers' sweeper.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.celery_app import make_app
from dagflow.dashboard.jobs_panel import probe_jobs
from dagflow.execution.runtime import runtime_for
from dagflow.scheduling.firing import Firing
from dagflow.scheduling.job import Job, JobStatus
from dagflow.scheduling.job_hooks import JOB_DRAIN_LEASE_S, sweep_jobs
from dagflow.settings import Settings
from dagflow.stores import RedisRunStore
from dagflow.stores.redis_jobs import RedisJobStore
from tests.integration.test_scheduler_redis import Deployment
from tests.support.processes import kill_worker
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WORKFLOWS = """
import time
from pathlib import Path
from dagflow import workflow

def _count(params, name):
    path = Path(params["dir"]) / name
    with path.open("a") as handle:
        handle.write("x\\n")
    return len(path.read_text().splitlines())

@workflow("first")
def first(params):
    time.sleep(float(params.get("seconds", 0)))
    return {"ran": _count(params, "first.txt")}

@workflow("flaky")
def flaky(params):
    time.sleep(float(params.get("seconds", 0)))
    attempt = _count(params, "flaky.txt")
    if attempt <= int(params["failures"]):
        raise RuntimeError(f"try {attempt} fails")
    return {"attempt": attempt}
"""


def flaky_dag(root: Path, failures: int, seconds: float = 0.0) -> str:
    return (
        "name: flaky\ntenant_id: dag-tenant\ntasks:\n"
        f"  - id: a\n    workflow_ref: first\n    params: {{dir: '{root}', seconds: {seconds}}}\n"
        "  - id: b\n    workflow_ref: flaky\n    depends_on: [a]\n"
        f"    params: {{dir: '{root}', failures: {failures}, seconds: {seconds}}}\n"
    )


def entry(sid: str, dag: str, tenant: str = "acme", max_retries: int = 0) -> str:
    return (
        f'- id: {sid}\n  cron: "* * * * *"\n  dag: {dag}\n  tenant: {tenant}\n'
        f"  max_retries: {max_retries}\n"
    )


@pytest.fixture
def deploy(tmp_path: Path, scratch_redis: str) -> Iterator[Deployment]:
    (tmp_path / "dags").mkdir()
    (tmp_path / "schedules").mkdir()
    (tmp_path / "testflows.py").write_text(WORKFLOWS)
    deployment = Deployment(tmp_path, scratch_redis)
    deployment.env.update(
        DAGFLOW_JOB_RETRY_BASE_S="0.5", DAGFLOW_SWEEP_S="0.2", DAGFLOW_EVENTS="file"
    )
    yield deployment
    deployment.stop()


@pytest.fixture
def jobs(scratch_redis: str) -> Iterator[RedisJobStore]:
    store = RedisJobStore(scratch_redis)
    yield store
    store.close()


def dagflow_jobs(deploy: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagflow", "jobs", *args],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def listed(deploy: Deployment, *args: str) -> list[dict[str, Any]]:
    result = dagflow_jobs(deploy, "--json", *args)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


class Watcher:
    """Polls the one job in the store every 10 ms and keeps each status change."""

    def __init__(self, jobs: RedisJobStore) -> None:
        self.jobs = jobs
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for job in self.jobs.jobs(limit=1):
                if not self.seen or self.seen[-1] != job.status.value:
                    self.seen.append(job.status.value)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def only_job(jobs: RedisJobStore) -> Job:
    (job,) = jobs.jobs()
    return job


def test_a_failed_job_is_retried_from_failure_and_succeeds(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given a schedule with max_retries 1 whose DAG fails on its first try only
    (deploy.root / "dags" / "flaky.yaml").write_text(flaky_dag(deploy.root, 1, seconds=0.3))
    deploy.schedule("s.yaml", entry("nightly", "dags/flaky.yaml", max_retries=1))
    deploy.worker()
    watcher = Watcher(jobs)
    # When --once ticks: it waits for the job, its retry included
    result = deploy.once("--now", "2026-11-26T10:05:00Z")
    seen = watcher.stop()
    # Then the job succeeded on its second try
    assert result.returncode == 0, result.stderr
    assert "1 succeeded, 0 failed" in result.stderr
    assert [s for s in seen if s != "PENDING"] == ["RUNNING", "RETRY", "RUNNING", "SUCCESS"]
    assert seen[0] in ("PENDING", "RUNNING")
    job = only_job(jobs)
    assert job.status == JobStatus.SUCCESS and job.tries == 2
    first, second = job.runs
    assert second == f"{job.id}-2" and job.last_status == "success"
    # And the retry reused the first try's succeeded task: 'a' ran once, 'b' twice
    assert lines(deploy.root / "first.txt") == 1
    assert lines(deploy.root / "flaky.txt") == 2
    # And both runs are linked to the job (their job_id label)
    for run_id in (first, second):
        status = subprocess.run(
            [sys.executable, "-m", "dagflow", "status", run_id, "--json"],
            cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["status"] == ("failed" if run_id == first else "success")
    runs = RedisRunStore(jobs.url)
    for run_id in (first, second):
        snap = runs.snapshot(run_id)
        assert snap is not None and snap.meta["labels"]["job_id"] == job.id
    snap = runs.snapshot(second)
    assert snap is not None and snap.meta["reused"] == ["a"]


def test_a_job_whose_retries_are_exhausted_ends_failed(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    (deploy.root / "dags" / "flaky.yaml").write_text(flaky_dag(deploy.root, 5))
    deploy.schedule("s.yaml", entry("nightly", "dags/flaky.yaml", max_retries=1))
    deploy.worker()
    result = deploy.once("--now", "2026-11-26T10:05:00Z")
    assert result.returncode == 1, result.stderr
    job = only_job(jobs)
    assert job.status == JobStatus.FAILED and job.tries == 2 and job.retry_at is None
    assert lines(deploy.root / "flaky.txt") == 2
    (shown,) = listed(deploy, "--status", "failed")
    assert shown["id"] == job.id and shown["tries"] == 2 and shown["last_run_id"] == job.runs[-1]


def test_once_drains_at_most_sched_max_jobs_per_drain(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given five schedules due at once and a drain of two jobs per tick
    (deploy.root / "dags" / "ok.yaml").write_text(flaky_dag(deploy.root, 0))
    deploy.schedule(
        "s.yaml",
        "".join(
            entry(f"s{n}", "dags/ok.yaml", tenant="acme" if n % 2 else "beta") for n in range(1, 6)
        ),
    )
    deploy.env["SCHED_MAX_JOBS_PER_DRAIN"] = "2"
    deploy.worker()
    # When --once ticks: five jobs, two started, three stay PENDING in Redis
    first = deploy.once("--now", "2026-11-26T10:05:00Z")
    assert first.returncode == 0, first.stderr
    assert "5 enqueued, 2 drained; 2 succeeded, 0 failed; 3 jobs pending" in first.stderr
    assert len(jobs.jobs(status=JobStatus.PENDING)) == 3
    assert len(jobs.jobs(status=JobStatus.SUCCESS)) == 2
    # When a second --once runs in the same minute: nothing new, two more drained
    second = deploy.once("--now", "2026-11-26T10:05:30Z")
    assert "0 enqueued, 2 drained; 2 succeeded, 0 failed; 1 jobs pending" in second.stderr
    # Then `dagflow jobs` in another process filters by status, tenant and schedule
    assert len(listed(deploy, "--status", "PENDING")) == 1
    assert len(listed(deploy, "--status", "success")) == 4
    assert {j["tenant_id"] for j in listed(deploy, "--tenant", "beta")} == {"beta"}
    assert len(listed(deploy, "--tenant", "acme")) == 3
    (s3,) = listed(deploy, "--schedule", "s3")
    assert s3["schedule_id"] == "s3" and s3["dag_path"] == "dags/ok.yaml"
    assert len(listed(deploy, "--limit", "2")) == 2
    table = dagflow_jobs(deploy, "--status", "success")
    assert table.returncode == 0 and table.stdout.count("SUCCESS") == 4
    assert "LAST RUN" in table.stdout
    # And the dashboard's jobs panel counts them for a tenant from the same Redis
    view = probe_jobs(Settings.from_env(deploy.env), "beta")
    assert view is not None and view.error is None
    assert {k: v for k, v in view.counts.items() if v} == {"SUCCESS": 2}
    assert {j.schedule_id for j in view.recent} == {"s2", "s4"}
    bad = dagflow_jobs(deploy, "--status", "done")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "unknown job status 'done'" in bad.stderr


def test_jobs_without_redis_is_one_line_and_exit_3(deploy: Deployment) -> None:
    env = {k: v for k, v in deploy.env.items() if k not in ("DAGFLOW_BROKER_URL",)}
    env.pop("DAGFLOW_RESULT_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-m", "dagflow", "jobs"],
        cwd=deploy.root, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert "jobs are kept in Redis: set DAGFLOW_BROKER_URL" in result.stderr


def test_a_due_retry_runs_after_the_worker_that_recorded_it_died(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given a job whose first try failed on a worker, with its retry due in 3 s
    (deploy.root / "dags" / "flaky.yaml").write_text(flaky_dag(deploy.root, 1))
    deploy.schedule("s.yaml", entry("nightly", "dags/flaky.yaml", max_retries=1))
    deploy.env["DAGFLOW_JOB_RETRY_BASE_S"] = "3"
    deploy.worker()
    once = deploy.scheduler("--once", "--now", "2026-11-26T10:05:00Z")
    wait_for(lambda: any(j.status == JobStatus.RETRY for j in jobs.jobs()), 30, "the job is RETRY")
    # When that worker is killed before the retry is due, and a new worker starts
    kill_worker(deploy.workers.pop())
    assert only_job(jobs).status == JobStatus.RETRY
    deploy.worker()
    # Then the new worker's sweeper starts the retry and the job succeeds
    assert once.wait(timeout=40) == 0, deploy.output(once)
    job = only_job(jobs)
    assert job.status == JobStatus.SUCCESS and job.tries == 2
    assert lines(deploy.root / "first.txt") == 1 and lines(deploy.root / "flaky.txt") == 2


def test_celery_beat_drains_jobs_and_the_workers_retry_them(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given `celery -A dagflow beat` and a schedule due every minute whose first try fails
    (deploy.root / "dags" / "flaky.yaml").write_text(flaky_dag(deploy.root, 1))
    deploy.schedule("s.yaml", entry("nightly", "dags/flaky.yaml", max_retries=1))
    deploy.worker()
    deploy.start(sys.executable, "-m", "celery", "-A", "dagflow", "beat", "-l", "info")

    def oldest() -> Job | None:
        found = jobs.jobs()
        return found[-1] if found else None

    # Then Beat's job is started on the worker, retried from failure, and succeeds
    wait_for(lambda: (j := oldest()) is not None and j.status.ended, 40, "the job ended")
    job = oldest()
    assert job is not None and job.status == JobStatus.SUCCESS and job.tries == 2
    # And schedule_enqueued names the job
    state = [json.loads(line) for line in deploy.state.read_text().splitlines()]
    enqueued = [r for r in state if r["event"] == "schedule_enqueued"]
    assert enqueued[0]["job_id"] == job.id and enqueued[0]["run_id"] == job.runs[0]


def test_a_job_drained_by_a_scheduler_that_died_is_queued_again(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given a PENDING job taken off the queue by a scheduler that never started it
    settings = Settings.from_env(deploy.env)
    firing = Firing(
        schedule_id="s", dag="dags/d.yaml", tenant="acme", scheduled_minute="", run_id="r1",
        job_id="j1",
    )  # fmt: skip
    jobs.add([firing.job(time.time())])
    assert [j.id for j in jobs.drain(5, time.time())] == ["j1"]
    app = make_app(settings)
    rt = runtime_for(app)
    # When a sweep runs before the drain lease ends: it stays out of the queue
    assert sweep_jobs(app, rt).requeued == ()
    assert jobs.queued() == 0
    # When a sweep runs after it: the job is queued again, still PENDING, for the next drain
    later = time.time() + JOB_DRAIN_LEASE_S + 1
    assert sweep_jobs(app, rt, now=later).requeued == ("j1",)
    assert [j.id for j in jobs.drain(5, later)] == ["j1"]
    again = jobs.get("j1")
    assert again is not None and again.status == JobStatus.PENDING and again.runs == ()


def test_a_cancelled_run_ends_its_job_failed_without_retry(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given a running job with retries left
    (deploy.root / "dags" / "flaky.yaml").write_text(flaky_dag(deploy.root, 0, seconds=5))
    deploy.schedule("s.yaml", entry("nightly", "dags/flaky.yaml", max_retries=2))
    deploy.worker()
    once = deploy.scheduler("--once", "--now", "2026-11-26T10:05:00Z")
    wait_for(lambda: any(j.status == JobStatus.RUNNING for j in jobs.jobs()), 30, "RUNNING")
    # When an operator cancels its run
    cancel = subprocess.run(
        [sys.executable, "-m", "dagflow", "cancel", only_job(jobs).run_id],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert cancel.returncode == 0, cancel.stderr
    # Then the job ends FAILED after one try, and --once reports the failure
    assert once.wait(timeout=40) == 1, deploy.output(once)
    job = only_job(jobs)
    assert job.status == JobStatus.FAILED and job.tries == 1 and job.last_status == "cancelled"
    assert jobs.take_due_retries(time.time() + 3600, 10, 1.0) == []


def test_a_job_whose_run_waits_for_a_slot_stays_pending_until_it_starts(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given two schedulers with one schedule each, due at once, and one scheduled run at a
    # time across both (SCHED_MAX_PARALLEL is held in Redis)
    (deploy.root / "dags" / "slow.yaml").write_text(flaky_dag(deploy.root, 0, seconds=1.0))
    deploy.schedule("s.yaml", entry("one", "dags/slow.yaml"))
    (deploy.root / "schedules2").mkdir()
    (deploy.root / "schedules2" / "s.yaml").write_text(entry("two", "dags/slow.yaml"))
    deploy.env["SCHED_MAX_PARALLEL"] = "1"
    deploy.worker(concurrency=4)
    runs = RedisRunStore(jobs.url)
    # When both tick
    procs = [
        deploy.scheduler("--once", "--now", "2026-11-26T10:05:00Z"),
        deploy.scheduler("--once", "--now", "2026-11-26T10:05:00Z", directory="schedules2"),
    ]
    # Then while one job runs, the other stays PENDING: its run waits for the slot
    wait_for(
        lambda: sorted(j.status.value for j in jobs.jobs()) == ["PENDING", "RUNNING"],
        20,
        "one job running, one pending",
    )
    (waiting,) = jobs.jobs(status=JobStatus.PENDING)

    def run_pending_job_pending() -> bool:
        snap = runs.snapshot(waiting.run_id)
        job = jobs.get(waiting.id)
        return (
            snap is not None
            and snap.status == "pending"
            and job is not None
            and (job.status == JobStatus.PENDING)
        )

    wait_for(run_pending_job_pending, 10, "its run submitted and waiting, the job PENDING")
    # And both succeed
    for proc in procs:
        assert proc.wait(timeout=45) == 0, deploy.output(proc)
    assert sorted(j.status.value for j in jobs.jobs()) == ["SUCCESS", "SUCCESS"]


def test_an_operator_reruns_a_failed_job_from_another_process(
    deploy: Deployment, jobs: RedisJobStore
) -> None:
    # Given a job with no retries left whose DAG failed (its second task, once)
    (deploy.root / "dags" / "flaky.yaml").write_text(flaky_dag(deploy.root, 1))
    deploy.schedule("s.yaml", entry("nightly", "dags/flaky.yaml", max_retries=0))
    deploy.worker()
    assert deploy.once("--now", "2026-11-26T10:05:00Z").returncode == 1
    failed = only_job(jobs)
    assert failed.status == JobStatus.FAILED and failed.tries == 1
    # When an operator re-runs it
    rerun = subprocess.run(
        [sys.executable, "-m", "dagflow", "rerun-job", failed.id],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert f"run {failed.id}-2" in rerun.stdout
    # Then the job's second try runs from failure (task a is reused) and succeeds
    wait_for(lambda: only_job(jobs).status == JobStatus.SUCCESS, 30, "the job succeeded")
    job = only_job(jobs)
    assert job.runs == (failed.runs[0], f"{failed.id}-2")
    assert lines(deploy.root / "first.txt") == 1
    assert lines(deploy.root / "flaky.txt") == 2
    # And a job that succeeded cannot be re-run: one line, exit 3
    again = subprocess.run(
        [sys.executable, "-m", "dagflow", "rerun-job", failed.id],
        cwd=deploy.root, env=deploy.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert again.returncode == 3
    assert again.stderr.strip().splitlines() == [
        f"RunnerError: job {failed.id} is SUCCESS: only a FAILED job can be re-run"
    ]
