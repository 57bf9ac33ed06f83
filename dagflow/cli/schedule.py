"""``dagflow schedule``: tick in this process and drive the runs (``--once`` or ``--serve``).

Each firing won becomes a ``PENDING`` job; each tick then drains at most
``SCHED_MAX_JOBS_PER_DRAIN`` jobs and runs them (at most ``SCHED_MAX_PARALLEL`` at once).
``--once`` waits for the jobs it drained to end, their retries included; jobs it did not
drain stay ``PENDING`` in Redis for the next drain (without Redis they die with it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from dagflow.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_RUN_FAILED,
    is_verbose,
    verbose_option,
)
from dagflow.errors import ScheduleError

if TYPE_CHECKING:
    from dagflow.client.runner import Runner
    from dagflow.events.state_store import StateRecorder
    from dagflow.scheduling.firing import Firing
    from dagflow.scheduling.schedules import ScheduleDir
    from dagflow.settings import Settings

logger = logging.getLogger("dagflow.scheduler")

EPILOG = """\b
Examples:
  dagflow schedule --dir schedules --once   # one tick, wait, exit
  dagflow schedule --dir schedules --serve  # until Ctrl+C
  dagflow schedule --once --now 2026-11-26T10:05:00Z

\b
Exit codes: 0 ok, 1 a run failed, 2 invalid schedules or arguments,
3 configuration error, 130 interrupted (a second signal to --serve)."""


class _Time(click.ParamType[datetime]):
    """An ISO 8601 time with a zone, such as ``2026-11-26T10:05:00Z``."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        from dagflow.scheduling.ticker import parse_time

        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    logging.getLogger("dagflow").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # memory:// has no host


@click.command(short_help="run DAGs on cron schedules (--once or --serve)", epilog=EPILOG)
@click.option("--once", is_flag=True, help="one tick, run what is due, exit")
@click.option("--serve", is_flag=True, help="tick every SCHED_TICK_MS until a signal")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="schedules dir (default: DAGFLOW_SCHEDULES_DIR, else schedules)",
)
@click.option("--now", type=_Time(), default=None, help="with --once: the time to tick at")
@click.option("--timeout", type=float, default=None, help="seconds to wait for each run at most")
@verbose_option("debug logs and tracebacks")
def schedule(
    once: bool, serve: bool, directory: Path | None, now: datetime | None, timeout: float | None
) -> int:
    """Run DAGs on cron schedules (exactly once per schedule and minute).

    Reads the schedule files in --dir and runs what is due, on the workers of
    DAGFLOW_BROKER_URL or on an in-process worker. Give exactly one of --once and --serve.
    """
    if once == serve:
        raise click.UsageError("give exactly one of --once and --serve")
    from dagflow.scheduling.schedules import ScheduleDir
    from dagflow.settings import Settings
    from dagflow.wiring import state_recorder

    verbose = is_verbose()
    settings = Settings.from_env()
    directory = directory or settings.schedules_dir
    _setup_logging(verbose)
    if not directory.is_dir():
        raise ScheduleError("schedules directory not found", file=str(directory))
    state = state_recorder(settings)
    schedules = ScheduleDir(directory)
    schedules.refresh()
    if once and schedules.errors:
        for error in schedules.errors:
            for line in error.lines():
                print(line, file=sys.stderr)
        return EXIT_INVALID
    return _run(settings, state, schedules, once=once, now=now, timeout=timeout, verbose=verbose)


def _run(
    settings: Settings,
    state: StateRecorder,
    schedules: ScheduleDir,
    *,
    once: bool,
    now: datetime | None,
    timeout: float | None,
    verbose: bool,
) -> int:
    from dagflow.client.runner import Runner
    from dagflow.errors import SpecError
    from dagflow.scheduling.firing import firing_dag
    from dagflow.scheduling.job_hooks import fail_job
    from dagflow.scheduling.run_pool import RunQueue
    from dagflow.scheduling.ticker import Clock, Ticker, drain, serve
    from dagflow.wiring import minute_claims

    runner = Runner(settings)
    jobs = runner.runtime.jobs
    ticker = Ticker(schedules, minute_claims(settings), state, jobs=jobs)
    runner.start_embedded_worker(loglevel="WARNING" if verbose else "CRITICAL")
    _setup_logging(verbose)  # the embedded worker's Celery log setup replaced ours
    submit_lock = threading.Lock()
    limit = settings.sched_max_jobs_per_drain

    def start(firing: Firing) -> Callable[[], bool]:
        try:
            dag = firing_dag(firing, settings)
        except SpecError as exc:
            fail_job(jobs, firing.job_id, exc.one_line())
            raise
        with submit_lock:  # one submit at a time: Celery producers are not thread-safe
            # A job drained twice (its first drainer looked dead) is started once.
            if runner.runtime.store.snapshot(firing.run_id) is None:
                state.record_event(firing.state_event("run_started", dag_name=dag.name))
                try:
                    runner.submit(
                        dag, run_id=firing.run_id, labels=firing.labels, params=firing.params
                    )
                except SpecError as exc:
                    fail_job(jobs, firing.job_id, exc.one_line())
                    raise
            jobs.sent([firing.job_id])

        def wait() -> bool:
            status = wait_job(runner, firing, timeout)
            logger.info("dagflow: job %s of %s: %s", firing.job_id, firing.schedule_id, status)
            return status == "SUCCESS"

        return wait

    runs = RunQueue(start, settings.sched_max_parallel)
    abort = threading.Event()
    try:
        if once:
            clock = Clock(now) if now else Clock.from_env(os.environ)
            firings = ticker.tick(clock.now())
            drained = drain(jobs, limit)
            for firing in drained:
                runs.put(firing)
            runs.join()
            print(
                f"{len(firings)} enqueued, {len(drained)} drained; {runs.succeeded} succeeded, "
                f"{runs.failed} failed; {jobs.queued()} jobs pending",
                file=sys.stderr,
            )
            return EXIT_RUN_FAILED if runs.failed else EXIT_OK
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            (abort if stop.is_set() else stop).set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        logger.info(
            "dagflow: serving %s (%d schedules)", schedules.directory, len(schedules.schedules)
        )
        # Drain only what this process can start soon: the rest waits in the job queue
        # (in Redis, where another scheduler may take it), not in this process.
        serve(
            ticker,
            Clock.from_env(os.environ),
            settings.sched_tick_ms / 1000,
            stop,
            runs.put,
            lambda: drain(jobs, min(limit, settings.sched_max_parallel * 2 - runs.waiting)),
        )
        logger.info("dagflow: stopping, %d runs queued, %d running", runs.waiting, runs.running)
        # With a broker, runs already sent finish on the workers: only wait for the queue.
        if not runs.join(abort, submitted_only=not runner.embedded):
            logger.warning("dagflow: second signal, leaving %d queued runs", runs.waiting)
            return EXIT_INTERRUPTED
        return EXIT_OK
    finally:
        runs.close()
        runner.close(wait=False)


def wait_job(runner: Runner, firing: Firing, timeout: float | None, poll_s: float = 0.1) -> str:
    """Wait until the firing's job ends, its retries included; return its final status.

    Returns the status it had when ``timeout`` passed if it had not ended by then.
    """
    import time

    from dagflow.scheduling.job import JobStatus

    deadline = None if timeout is None else time.monotonic() + timeout
    jobs = runner.runtime.jobs
    while True:
        job = jobs.get(firing.job_id)
        if job is None:
            return "UNKNOWN"
        if job.status.ended or (deadline is not None and time.monotonic() > deadline):
            return job.status.value
        if job.status == JobStatus.RUNNING:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.01)
            try:
                runner.attach(job.run_id).wait(timeout=left)
            except Exception as exc:  # the job is the authority: look at it again
                logger.debug("dagflow: waiting for run %s: %s", job.run_id, exc)
                time.sleep(poll_s)
        else:
            time.sleep(poll_s)


COMMANDS = (schedule,)
