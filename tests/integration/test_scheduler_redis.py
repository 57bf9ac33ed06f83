"""The scheduler against a real Redis and real Celery workers, as subprocesses.

Each test builds a deployment root under ``tmp_path`` (``dags/``, ``schedules/``, a
workflow module with a slow and a failing step), gets an empty database of the session's
private Redis, starts ``python -m celery -A dagflow worker`` in the root (and waits until it
is ready),
and runs ``dagflow schedule`` or ``celery -A dagflow beat`` there, with a collector
(``dagflow events collect``) writing the state file from the event stream. Simulated
minutes come from the CLI's test clock (``DAGFLOW_SCHED_CLOCK_*``, 60 s per real second).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dagflow.events.collector import collector_lag
from tests.support.processes import start_worker, stop_worker
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]

WORKFLOWS = """
import time
from dagflow import workflow

@workflow("slow_step")
def slow_step(params):
    time.sleep(float(params.get("seconds", 0.5)))
    return {"slept": params.get("seconds", 0.5)}

@workflow("boom_step")
def boom_step(params):
    raise RuntimeError("boom")
"""


def dag_yaml(name: str, workflow: str) -> str:
    return (
        f"name: {name}\ntenant_id: dag-tenant\ntasks:\n"
        f"  - id: only\n    workflow_ref: {workflow}\n    params: {{seconds: 0.6}}\n"
    )


def entry(sid: str, cron: str, dag: str = "dags/weekly_ops_chain.yaml") -> str:
    return f'- id: {sid}\n  cron: "{cron}"\n  dag: {dag}\n  tenant: acme\n'


class Deployment:
    """A deployment root with its environment, processes and state file."""

    def __init__(self, root: Path, broker: str) -> None:
        self.root = root
        self.broker = broker
        self.state = root / "logs" / "state.jsonl"
        self.events = root / "logs" / "events.jsonl"
        self.env = {
            **os.environ,
            "DAGFLOW_BROKER_URL": broker,
            "STATE_STORE_PATH": str(self.state),
            "ORCH_EVENTS_PATH": str(self.events),
            "DAGFLOW_WORKFLOWS": "testflows",
            "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
            "SCHED_TICK_MS": "100",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def schedule(self, name: str, text: str) -> None:
        path = self.root / "schedules" / name
        path.write_text(text)
        stamp = time.time_ns()
        os.utime(path, ns=(stamp, stamp))

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        # Output goes to a file: an unread pipe fills up and blocks the process.
        log = (self.root / f"proc-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            args, cwd=self.root, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.root / f"proc-{self.procs.index(proc)}.log").read_text()

    def worker(self, concurrency: int = 2) -> None:
        """Start a worker in the deployment root and wait until it is ready."""
        log = self.root / f"worker-{len(self.workers)}.log"
        self.workers.append(start_worker(self.env, log, concurrency=concurrency, cwd=self.root))

    def scheduler(
        self, *args: str, directory: str = "schedules", **env: str
    ) -> subprocess.Popen[bytes]:
        return self.start(
            sys.executable, "-m", "dagflow", "schedule", "--dir", directory, *args, **env
        )

    def peak_running(self) -> int:
        """The most runs that were running at once (from dag_start/dag_done events)."""
        marks = sorted(
            (r["timestamp"], 1 if r["event"] == "dag_start" else -1)
            for r in self.records(self.events)
            if r["event"] in ("dag_start", "dag_done")
        )
        running = peak = 0
        for _, step in marks:
            running += step
            peak = max(peak, running)
        return peak

    def once(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagflow", "schedule", "--dir", "schedules", "--once", *args],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=45,
        )  # fmt: skip

    def collector(self) -> None:
        """Start ``dagflow events collect``: with a broker, every state line goes through the
        event stream and the collector writes the state file."""
        self.start(sys.executable, "-m", "dagflow", "events", "collect")

    def collected(self) -> None:
        """Wait until the collector wrote every line appended to the stream so far."""
        client = redis.Redis.from_url(self.broker, decode_responses=True)
        try:
            wait_for(
                lambda: collector_lag(client, int(time.time() * 1000)).entries == 0,
                15,
                "the collector caught up",
            )
        finally:
            client.close()

    def records(self, path: Path | None = None) -> list[dict[str, Any]]:
        self.collected()
        path = path or self.state
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == event]

    def stop(self) -> None:
        for worker in self.workers:
            stop_worker(worker)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def deploy(tmp_path: Path, scratch_redis: str) -> Iterator[Deployment]:
    (tmp_path / "dags").mkdir()
    (tmp_path / "schedules").mkdir()
    (tmp_path / "dags" / "weekly_ops_chain.yaml").write_text(
        (REPO / "dags" / "weekly_ops_chain.yaml").read_text()
    )
    (tmp_path / "dags" / "slow.yaml").write_text(dag_yaml("slow", "slow_step"))
    (tmp_path / "dags" / "boom.yaml").write_text(dag_yaml("boom", "boom_step"))
    (tmp_path / "testflows.py").write_text(WORKFLOWS)
    deployment = Deployment(tmp_path, scratch_redis)
    deployment.collector()
    yield deployment
    deployment.stop()


def test_once_runs_the_due_dag_and_a_second_once_does_nothing(deploy: Deployment) -> None:
    # Given a due schedule and a real worker
    deploy.schedule("weekly.yaml", entry("weekly_ops_chain", "*/5 * * * *"))
    deploy.worker()
    # When --once ticks at 10:05
    first = deploy.once("--now", "2026-11-26T10:05:00Z")
    # Then the DAG ran to completion and the three state events name the same run
    assert first.returncode == 0, first.stderr
    events = deploy.records()
    assert [e["event"] for e in events] == ["schedule_enqueued", "run_started", "run_finished"]
    assert len({e["run_id"] for e in events}) == 1
    assert {e["scheduled_minute"] for e in events} == {"2026-11-26T10:05:00Z"}
    assert {e["tenant_id"] for e in events} == {"acme"}
    assert events[2]["status"] == "success" and events[2]["duration_s"] >= 0
    # When a second --once runs in the same minute: nothing is enqueued
    second = deploy.once("--now", "2026-11-26T10:05:40Z")
    assert second.returncode == 0 and "0 enqueued" in second.stderr
    assert len(deploy.records()) == 3


def test_once_exits_1_when_a_run_fails(deploy: Deployment) -> None:
    deploy.schedule("boom.yaml", entry("boom", "* * * * *", "dags/boom.yaml"))
    deploy.worker()
    result = deploy.once("--now", "2026-11-26T10:05:00Z")
    assert result.returncode == 1
    assert deploy.named("run_finished")[0]["status"] == "failed"


def test_once_with_a_bad_file_exits_2(deploy: Deployment) -> None:
    deploy.schedule("bad.yaml", entry("bad", "*/5 * * * 9"))
    result = deploy.once()
    assert result.returncode == 2
    assert "schedule 'bad', field 'cron': ScheduleError: day-of-week field '9'" in result.stderr


def test_max_parallel_holds(deploy: Deployment) -> None:
    # Given five slow DAGs due at once, SCHED_MAX_PARALLEL=2 and a worker with 4 slots
    deploy.schedule(
        "slow.yaml", "".join(entry(f"slow{i}", "* * * * *", "dags/slow.yaml") for i in range(5))
    )
    deploy.env["SCHED_MAX_PARALLEL"] = "2"
    deploy.worker(concurrency=4)
    result = deploy.once("--now", "2026-11-26T10:05:00Z")
    assert result.returncode == 0, result.stderr
    # Then all five ran, never more than two at once (from dag_start/dag_done events)
    peak = deploy.peak_running()
    assert len(deploy.named("run_finished")) == 5
    assert peak == 2


def test_max_parallel_holds_across_two_schedulers(deploy: Deployment) -> None:
    # Given two schedulers, each with three slow DAGs due, one SCHED_MAX_PARALLEL=2 for
    # both, and a worker with 4 slots
    (deploy.root / "schedules2").mkdir()
    deploy.schedule(
        "slow.yaml", "".join(entry(f"a{i}", "* * * * *", "dags/slow.yaml") for i in range(3))
    )
    (deploy.root / "schedules2" / "slow.yaml").write_text(
        "".join(entry(f"b{i}", "* * * * *", "dags/slow.yaml") for i in range(3))
    )
    deploy.env["SCHED_MAX_PARALLEL"] = "2"
    deploy.worker(concurrency=4)
    # When both tick at the same time, in two processes
    procs = [
        deploy.scheduler("--once", "--now", "2026-11-26T10:05:00Z"),
        deploy.scheduler("--once", "--now", "2026-11-26T10:05:00Z", directory="schedules2"),
    ]
    for proc in procs:
        assert proc.wait(timeout=45) == 0, deploy.output(proc)
    # Then all six ran, never more than two at once across both
    peak = deploy.peak_running()
    assert len(deploy.named("run_finished")) == 6
    assert peak == 2


def test_two_serving_schedulers_enqueue_each_minute_once(deploy: Deployment) -> None:
    # Given two --serve processes on the same fast clock (60 s per second) and Redis
    deploy.schedule("two.yaml", entry("every", "* * * * *") + entry("even", "*/2 * * * *"))
    deploy.worker()
    clock = {"DAGFLOW_SCHED_CLOCK_START": "2026-01-01T00:00:10Z", "DAGFLOW_SCHED_CLOCK_SPEED": "60"}
    first = deploy.scheduler("--serve", **clock)
    second = deploy.scheduler("--serve", **clock)
    # When they run over at least three minute boundaries
    wait_for(lambda: len({e["scheduled_minute"] for e in deploy.named("schedule_enqueued")}) >= 5)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0 and second.wait(15) == 0
    # Then each (schedule, minute) was enqueued exactly once
    enqueued = deploy.named("schedule_enqueued")
    counts = collections.Counter((e["schedule_id"], e["scheduled_minute"]) for e in enqueued)
    assert counts and set(counts.values()) == {1}
    minutes = sorted(m for sid, m in counts if sid == "every")
    assert len(minutes) >= 4
    assert all(int(m[14:16]) % 2 == 0 for sid, m in counts if sid == "even")
    # And every run that was enqueued finished (the shutdown drained the queue)
    wait_for(lambda: len(deploy.named("run_finished")) == len(enqueued))


def test_serving_picks_up_edits_and_keeps_the_last_good_file(deploy: Deployment) -> None:
    deploy.schedule("a.yaml", entry("a", "* * * * *"))
    deploy.worker()
    clock = {"DAGFLOW_SCHED_CLOCK_START": "2026-01-01T00:00:10Z", "DAGFLOW_SCHED_CLOCK_SPEED": "60"}
    proc = deploy.scheduler("--serve", **clock)

    def fired(sid: str) -> int:
        return sum(1 for e in deploy.named("schedule_enqueued") if e["schedule_id"] == sid)

    wait_for(lambda: fired("a") >= 1)
    # When a schedule is added to the file while serving, it takes effect
    deploy.schedule("a.yaml", entry("a", "* * * * *") + entry("b", "* * * * *"))
    wait_for(lambda: fired("b") >= 1)
    # When the file turns bad, both schedules keep firing from the last good version
    deploy.schedule("a.yaml", entry("a", "* * * * *") + entry("b", "bad cron"))
    wait_for(lambda: "keeping the last good version" in deploy.output(proc), what="bad file seen")
    a_then, b_then = fired("a"), fired("b")
    wait_for(lambda: fired("a") >= a_then + 2 and fired("b") >= b_then + 2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    output = deploy.output(proc)
    assert "keeping the last good version (2 schedules)" in output
    assert "field 'cron'" in output


def test_celery_beat_reads_the_schedules_directory(deploy: Deployment) -> None:
    # Given `celery -A dagflow beat` with no -S flag and a schedule due every minute
    deploy.schedule("every.yaml", entry("every", "* * * * *"))
    deploy.worker()
    deploy.start(sys.executable, "-m", "celery", "-A", "dagflow", "beat", "-l", "info")
    # Then the current minute's run is sent to the worker and finishes
    wait_for(lambda: len(deploy.named("run_finished")) >= 1)
    [enqueued, *_] = deploy.named("schedule_enqueued")
    finished = deploy.named("run_finished")[0]
    assert finished["run_id"] == enqueued["run_id"]
    assert finished["status"] == "success" and finished["tenant_id"] == "acme"


def test_beats_scheduler_stops_its_sweeper_when_beat_closes(
    scratch_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Beat's scheduler, set up as `celery -A dagflow beat` sets it up
    from dagflow.celery_app import make_app
    from dagflow.scheduling.beat import DagflowScheduler
    from dagflow.settings import Settings

    (tmp_path / "schedules").mkdir()
    for name, value in {
        "DAGFLOW_BROKER_URL": scratch_redis,
        "DAGFLOW_SCHEDULES_DIR": str(tmp_path / "schedules"),
        "STATE_STORE_PATH": str(tmp_path / "state.jsonl"),
        "ORCH_EVENTS_PATH": str(tmp_path / "events.jsonl"),
        "DAGFLOW_SWEEP_S": "0.2",
    }.items():
        monkeypatch.setenv(name, value)
    scheduler = DagflowScheduler(app=make_app(Settings.from_env()), lazy=False)
    thread = scheduler.sweeper._thread
    assert thread is not None and thread.is_alive()
    # When Beat closes it
    scheduler.close()
    # Then its sweeper thread ends
    wait_for(lambda: not thread.is_alive(), 5, "the sweeper thread ended")
