"""The ``dagflow`` command: parse, call the library, print. Nothing imports this module.

Examples::

    dagflow plan dags/weekly_ops_chain.yaml        # dry run, no server
    dagflow validate dags/*.yaml schedules/*.yaml  # for CI: exit 2 if any file is invalid
    dagflow run dags/weekly_ops_chain.yaml         # embedded worker, or DAGFLOW_BROKER_URL's
    dagflow dashboard --port 8050                  # the Dash dashboard on 127.0.0.1
    dagflow schedule --dir schedules --once        # one scheduler tick
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dagflow.errors import DagflowError, SpecError

if TYPE_CHECKING:
    from dagflow.runner import Runner
    from dagflow.stores import RunSnapshot

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_INVALID = 2
EXIT_ERROR = 3
#: With more tasks than this, progress is a counter line instead of one line per task.
PROGRESS_DETAIL_MAX = 40
#: Seconds without any task starting before ``run`` hints that no worker may be listening.
NO_WORKER_HINT_S = 10.0

_MARKS = {"running": "..", "retry": "<>", "ok": "ok", "failed": "!!", "skipped": "--"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dagflow",
        description="YAML DAG workflows on Celery.",
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and worker logs")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser(
        "plan", help="validate a DAG and print its plan (no server needed)", parents=[common]
    )
    plan.add_argument("file", type=Path)
    validate = sub.add_parser(
        "validate", help="check DAG and schedule files; exit 2 if any is bad", parents=[common]
    )
    validate.add_argument("files", type=Path, nargs="+")
    run = sub.add_parser("run", help="run a DAG now and wait for it", parents=[common])
    run.add_argument("file", type=Path)
    run.add_argument("--no-wait", action="store_true", help="print the run id and return")
    run.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    sub.add_parser("dashboard", help="serve the Dash dashboard", add_help=False)
    sub.add_parser("schedule", help="run the cron scheduler (--once or --serve)", add_help=False)
    return parser


def _cmd_plan(path: Path, out: TextIO) -> int:
    from dagflow.dag import load_dag, plan_text

    print(plan_text(load_dag(path)), file=out)
    return EXIT_OK


def _is_schedule_file(path: Path, data: object) -> bool:
    """Schedule files live in a ``schedules`` folder, or hold a list or a ``cron`` entry."""
    if path.parent.name == "schedules" or isinstance(data, list):
        return True
    return isinstance(data, dict) and "cron" in data


def _cmd_validate(paths: Sequence[Path], out: TextIO, err: TextIO) -> int:
    from dagflow.dag import dag_from_data
    from dagflow.spec import read_yaml

    bad = 0
    for path in paths:
        try:
            data = read_yaml(path)  # once: it tells which kind of file this is, too
            if _is_schedule_file(path, data):
                from dagflow.schedules import schedules_from_data

                entries = schedules_from_data(data, str(path))
                print(f"{path}: ok ({len(entries)} schedules)", file=out)
            else:
                dag = dag_from_data(data, str(path))
                print(f"{path}: ok ({len(dag.spec.tasks)} tasks)", file=out)
        except SpecError as exc:
            bad += 1
            print(exc.one_line(), file=err)
    return EXIT_INVALID if bad else EXIT_OK


class _Progress:
    """Prints task state changes (or a counter line for big DAGs) as a run goes."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.detail = total <= PROGRESS_DETAIL_MAX
        self.seen: dict[str, str] = {}
        self.last_line = ""
        self.started = time.monotonic()
        self.hinted = False

    def __call__(self, snapshot: RunSnapshot) -> None:
        states = snapshot.states or {}
        counts = snapshot.counts
        if self.detail:
            for task_id, state in states.items():
                if state != "pending" and self.seen.get(task_id) != state:
                    self.seen[task_id] = state
                    print(f"  [{_MARKS.get(state, state)}] {task_id} {state}", file=self.out)
        else:
            line = (
                f"  progress: {counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed, "
                f"{counts.get('skipped', 0)} skipped of {counts.get('total', 0)}"
            )
            if line != self.last_line:
                self.last_line = line
                print(line, file=self.out)
        idle = all(s == "pending" for s in states.values())
        if idle and not self.hinted and time.monotonic() - self.started > NO_WORKER_HINT_S:
            self.hinted = True
            print(
                "  (no task has started yet: is a worker running? celery -A dagflow worker)",
                file=sys.stderr,
            )
        self.out.flush()


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from dagflow.dag import load_dag
    from dagflow.runner import Runner
    from dagflow.settings import Settings

    settings = Settings.from_env()
    dag = load_dag(args.file, settings)
    runner = Runner(settings)
    try:
        _check_broker(runner)
        if not runner.embedded or not args.no_wait:
            runner.start_embedded_worker(loglevel="WARNING" if args.verbose else "CRITICAL")
        if args.no_wait and runner.embedded:
            print("--no-wait needs a broker (DAGFLOW_BROKER_URL); running and waiting.", file=out)
        mode = "embedded worker" if runner.embedded else f"workers on {settings.broker_url}"
        handle = runner.submit(dag)
        print(
            f"Run {handle.run_id}: DAG '{dag.name}' ({len(dag.spec.tasks)} tasks) on {mode}",
            file=out,
        )
        if args.no_wait and not runner.embedded:
            print(handle.run_id, file=out)
            return EXIT_OK
        progress = None if args.quiet else _Progress(out, len(dag.spec.tasks))
        result = handle.wait(timeout=args.timeout, on_progress=progress)
    finally:
        runner.close(wait=False)
    print("", file=out)
    print("DAG EXECUTION COMPLETE", file=out)
    print(f"DAG: {result.dag_name}", file=out)
    print(f"Tasks Succeeded: {result.succeeded}", file=out)
    print(f"Tasks Failed: {result.failed}", file=out)
    print(f"Tasks Skipped: {result.skipped}", file=out)
    print(f"Duration: {result.duration_s:.2f}s", file=out)
    print(f"Status: {result.status} (run {result.run_id})", file=out)
    if not result.ok:
        print(f"See {settings.events_path} for the errors (grep task_fail).", file=out)
    return EXIT_OK if result.ok else EXIT_RUN_FAILED


def _check_broker(runner: Runner) -> None:
    """Fail fast, in one line, when the Redis that holds run state cannot be reached."""
    from dagflow.errors import ConfigError
    from dagflow.stores import RedisRunStore

    store = runner.runtime.store
    if isinstance(store, RedisRunStore):
        try:
            store.client.ping()
        except Exception as exc:
            raise ConfigError(f"cannot reach Redis at {store.url}: {exc}") from None


def _is_connection_error(exc: Exception) -> bool:
    """True for errors of Redis, the broker or the network (imported lazily: plan stays fast)."""
    from kombu.exceptions import KombuError
    from redis import RedisError

    return isinstance(exc, (OSError, RedisError, KombuError))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dagflow`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "dashboard":
        from dagflow.dashboard.app import main as dashboard_main

        return dashboard_main(argv[1:])
    if argv and argv[0] == "schedule":
        from dagflow.scheduler import main as schedule_main

        return schedule_main(argv[1:])
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        if args.command == "plan":
            return _cmd_plan(args.file, out)
        if args.command == "validate":
            return _cmd_validate(args.files, out, err)
        if args.command == "run":
            return _cmd_run(args, out)
    except SpecError as exc:
        if args.verbose:
            raise
        print(exc.one_line(), file=err)
        return EXIT_INVALID
    except DagflowError as exc:
        if args.verbose:
            raise
        print(exc.one_line(), file=err)
        return EXIT_ERROR
    except TimeoutError as exc:
        print(f"TimeoutError: {exc}", file=err)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    except Exception as exc:
        # Redis or the broker went away mid-command: one line, not a traceback.
        if args.verbose or not _is_connection_error(exc):
            raise
        print(f"{type(exc).__name__}: {exc} (--verbose shows the traceback)", file=err)
        return EXIT_ERROR
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
