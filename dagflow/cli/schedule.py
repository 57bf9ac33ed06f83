"""``dagflow schedule``: tick in this process and drive the runs (``--once`` or ``--serve``).

Parses, runs :class:`dagflow.scheduling.driver.Driver` and prints; the loop itself (ticks,
drains, the run pool, waiting for jobs) lives there.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
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
    from dagflow.events.state_store import StateRecorder
    from dagflow.scheduling.schedule_dir import ScheduleDir
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
    from dagflow.scheduling.schedule_dir import ScheduleDir
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
    from dagflow.scheduling.driver import Driver
    from dagflow.scheduling.ticker import Clock

    driver = Driver(
        settings, state, schedules, timeout=timeout, loglevel="WARNING" if verbose else "CRITICAL"
    )
    _setup_logging(verbose)  # the embedded worker's Celery log setup replaced ours
    try:
        if once:
            clock = Clock(now) if now else Clock.from_env(os.environ)
            done = driver.once(clock.now())
            print(
                f"{done.enqueued} enqueued, {done.drained} drained; {done.succeeded} succeeded, "
                f"{done.failed} failed; {done.pending} jobs pending",
                file=sys.stderr,
            )
            return EXIT_RUN_FAILED if done.failed else EXIT_OK
        stop, abort = threading.Event(), threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            (abort if stop.is_set() else stop).set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        return (
            EXIT_OK if driver.serve(Clock.from_env(os.environ), stop, abort) else EXIT_INTERRUPTED
        )
    finally:
        driver.close()


COMMANDS = (schedule,)
