"""``dagflow schedule``: tick in this process and drive the runs (``--once`` or ``--serve``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from dagflow.errors import DagflowError
from dagflow.firing import Firing, firing_dag
from dagflow.run_queue import RunQueue
from dagflow.schedules import ScheduleDir
from dagflow.settings import Settings
from dagflow.state_store import JsonlStateStore
from dagflow.ticker import Clock, Ticker, claims_for, parse_time, serve

logger = logging.getLogger("dagflow.scheduler")

EXIT_OK, EXIT_RUN_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dagflow.scheduler",
        description="Run DAGs on cron schedules (exactly once per schedule and minute).",
        epilog=(
            "examples:\n"
            "  python -m dagflow.scheduler --dir schedules --once   # one tick, wait, exit\n"
            "  python -m dagflow.scheduler --dir schedules --serve  # until Ctrl+C\n"
            "  python -m dagflow.scheduler --once --now 2026-11-26T10:05:00Z\n"
            "exit codes: 0 ok, 1 a run failed, 2 invalid schedules, 130 interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one tick, run what is due, exit")
    mode.add_argument(
        "--serve", action="store_true", help="tick every SCHED_TICK_MS until a signal"
    )
    parser.add_argument("--dir", type=Path, default=settings.schedules_dir, help="schedules dir")
    parser.add_argument("--now", type=parse_time, help="with --once: the time to tick at")
    parser.add_argument("--timeout", type=float, help="seconds to wait for each run at most")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    logging.getLogger("dagflow").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # memory:// has no host


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dagflow.scheduler`` and ``dagflow schedule``."""
    settings = Settings.from_env()
    args = _parser(settings).parse_args(argv)
    _setup_logging(args.verbose)
    if not args.dir.is_dir():
        print(f"{args.dir}: ScheduleError: schedules directory not found", file=sys.stderr)
        return EXIT_INVALID
    state = JsonlStateStore(settings.state_path)
    schedules = ScheduleDir(args.dir)
    schedules.refresh()
    if args.once and schedules.errors:
        for error in schedules.errors:
            print(error.one_line(), file=sys.stderr)
        return EXIT_INVALID
    try:
        return _run(args, settings, state, schedules)
    except DagflowError as exc:
        if args.verbose:
            raise
        print(exc.one_line(), file=sys.stderr)
        return EXIT_INVALID


def _run(
    args: argparse.Namespace, settings: Settings, state: JsonlStateStore, schedules: ScheduleDir
) -> int:
    from dagflow.runner import Runner

    ticker = Ticker(schedules, claims_for(settings, state), state)
    runner = Runner(settings)
    runner.start_embedded_worker(loglevel="WARNING" if args.verbose else "CRITICAL")
    _setup_logging(args.verbose)  # the embedded worker's Celery log setup replaced ours
    submit_lock = threading.Lock()

    def start(firing: Firing) -> Callable[[], bool]:
        dag = firing_dag(firing, settings)
        with submit_lock:  # one submit at a time: Celery producers are not thread-safe
            state.record_event(firing.state_event("run_started", dag_name=dag.name))
            handle = runner.submit(dag, run_id=firing.run_id, labels=firing.labels)

        def wait() -> bool:
            result = handle.wait(timeout=args.timeout)
            logger.info(
                "dagflow: run %s of %s: %s", result.run_id, firing.schedule_id, result.status
            )
            return result.ok

        return wait

    runs = RunQueue(start, settings.sched_max_parallel)
    abort = threading.Event()
    try:
        if args.once:
            clock = Clock(args.now) if args.now else Clock.from_env(os.environ)
            firings = ticker.tick(clock.now())
            for firing in firings:
                runs.put(firing)
            runs.join()
            print(
                f"{len(firings)} enqueued; {runs.succeeded} succeeded, {runs.failed} failed",
                file=sys.stderr,
            )
            return EXIT_RUN_FAILED if runs.failed else EXIT_OK
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            (abort if stop.is_set() else stop).set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        logger.info("dagflow: serving %s (%d schedules)", args.dir, len(schedules.schedules))
        serve(ticker, Clock.from_env(os.environ), settings.sched_tick_ms / 1000, stop, runs.put)
        logger.info("dagflow: stopping, %d runs queued, %d running", runs.waiting, runs.running)
        # With a broker, runs already sent finish on the workers: only wait for the queue.
        if not runs.join(abort, submitted_only=not runner.embedded):
            logger.warning("dagflow: second signal, leaving %d queued runs", runs.waiting)
            return EXIT_INTERRUPTED
        return EXIT_OK
    finally:
        runs.close()
        runner.close(wait=False)


if __name__ == "__main__":
    sys.exit(main())
