"""``dagflow plan``, ``validate`` and ``run``: the commands that take DAG files."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import click

from dagflow.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_STILL_RUNNING,
    exit_now,
    is_verbose,
    print_result,
    still_running,
    verbose_option,
)
from dagflow.errors import ScheduleError, SpecError

if TYPE_CHECKING:
    from dagflow.client.runner import RunHandle, Runner
    from dagflow.dag.load import Dag
    from dagflow.stores import RunSnapshot

#: With more tasks than this, progress is a counter line instead of one line per task.
PROGRESS_DETAIL_MAX = 40
#: Seconds without any task starting before ``run`` hints that no worker may be listening.
NO_WORKER_HINT_S = 10.0

_MARKS = {
    "running": "..",
    "retry": "<>",
    "ok": "ok",
    "failed": "!!",
    "skipped": "--",
    "cancelled": "xx",
}
_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command(
    short_help="validate a DAG and print its plan (no server needed)",
    epilog="\b\nExample:\n  dagflow plan dags/weekly_ops_chain.yaml",
)
@click.argument("file", type=_FILE)
@verbose_option()
def plan(file: Path) -> int:
    """Validate the DAG in FILE and print its plan, Celery canvas and critical path.

    No server is needed: nothing is sent.
    """
    from dagflow.dag.budget import params_warning
    from dagflow.dag.load import load_dag, plan_text

    dag = load_dag(file)
    print(plan_text(dag))
    warning = params_warning(dag.spec)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    return EXIT_OK


def _is_schedule_file(path: Path, data: object) -> bool:
    """Schedule files live in a ``schedules`` folder, or hold a list or a ``cron`` entry."""
    if path.parent.name == "schedules" or isinstance(data, list):
        return True
    return isinstance(data, dict) and "cron" in data


@click.command(
    short_help="check DAG and schedule files; exit 2 if any is bad",
    epilog="\b\nExample:\n  dagflow validate dags/*.yaml schedules/*.yaml",
)
@click.argument("files", type=_FILE, nargs=-1, required=True)
@verbose_option()
def validate(files: Sequence[Path]) -> int:
    """Check each DAG and schedule file in FILES; print one line per file or per problem.

    Every file is checked: a good one is one line on stdout, a bad one one line per problem on
    stderr (each naming the file, the task and the field). Exits 2 if any file is invalid.
    """
    from dagflow.dag.load import dag_from_data
    from dagflow.dag.spec import read_yaml

    out, err = sys.stdout, sys.stderr
    bad = 0
    for path in files:
        try:
            data = read_yaml(path)  # once: it tells which kind of file this is, too
            if _is_schedule_file(path, data):
                from dagflow import workflows
                from dagflow.scheduling.schedules import (
                    schedules_from_data,
                    unknown_schedule_hooks,
                )
                from dagflow.settings import Settings

                entries = schedules_from_data(data, str(path))
                if any(not e.alerts.empty for e in entries):
                    workflows.load(Settings.from_env().workflow_modules)
                    hooks = unknown_schedule_hooks(entries, str(path), workflows.names())
                    if hooks:
                        raise ScheduleError.collect(hooks)
                print(f"{path}: ok ({len(entries)} schedules)", file=out)
            else:
                dag = dag_from_data(data, str(path))
                print(f"{path}: ok ({len(dag.spec.tasks)} tasks)", file=out)
        except SpecError as exc:
            bad += 1
            for line in exc.lines():
                print(line, file=err)
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


@click.command(
    short_help="run a DAG now and wait for it",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow run dags/weekly_ops_chain.yaml            # embedded worker, no server\n"
        "  DAGFLOW_BROKER_URL=redis://127.0.0.1:6379/0 dagflow run --no-wait "
        "dags/weekly_ops_chain.yaml\n"
        "  dagflow run dags/report.yaml --param day=2026-01-05 --param limit=10"
    ),
)
@click.argument("file", type=_FILE)
@click.option("--no-wait", is_flag=True, help="print the run id and return")
@click.option("--timeout", type=float, default=None, help="give up after this many seconds")
@click.option("--quiet", is_flag=True, help="no live progress")
@click.option(
    "--param",
    "param_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="a run-level param declared in the DAG's params: (repeatable; YAML scalar values)",
)
@verbose_option("show tracebacks and worker logs")
def run(
    file: Path, no_wait: bool, timeout: float | None, quiet: bool, param_args: tuple[str, ...]
) -> int:
    """Run the DAG in FILE now and wait for it to finish.

    Without DAGFLOW_BROKER_URL the run uses an embedded, in-process worker; with it, the
    run is sent to the workers on that broker. Exits 1 if a task failed. With the embedded
    worker, --timeout and Ctrl+C cancel the run (it cannot outlive this process).
    """
    from dagflow.client.runner import Runner, WaitTimeout
    from dagflow.dag.budget import check_params_size, params_warning
    from dagflow.dag.load import load_dag
    from dagflow.dag.params import parse_param_args, resolve_params
    from dagflow.settings import Settings

    out = sys.stdout
    try:
        params = parse_param_args(param_args)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None
    settings = Settings.from_env()
    dag = load_dag(file, settings)
    run_params = resolve_params(dag.spec.params, params, dag.source)  # before any worker starts
    check_params_size(dag.spec, run_params, dag.source)
    warning = params_warning(dag.spec, run_params)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    runner = Runner(settings)
    try:
        _check_broker(runner)
        _warn_unconsumed(runner, dag)
        if not runner.embedded or not no_wait:
            runner.start_embedded_worker(
                loglevel="WARNING" if is_verbose() else "CRITICAL", queues=dag.spec.queues.values()
            )
            # Celery's log setup silenced everything below CRITICAL; dagflow's own warnings
            # (where a log file is created, an unreachable store) must still show.
            logging.getLogger("dagflow").setLevel(logging.WARNING)
        if no_wait and runner.embedded:
            print("--no-wait needs a broker (DAGFLOW_BROKER_URL); running and waiting.", file=out)
        mode = "embedded worker" if runner.embedded else f"workers on {settings.broker_url}"
        handle = runner.submit(dag, params=params)
        print(
            f"Run {handle.run_id}: DAG '{dag.name}' ({len(dag.spec.tasks)} tasks) on {mode}",
            file=out,
        )
        waiting = handle.status().waiting_for
        if waiting:  # over a max_active_runs limit: say why nothing moves yet
            print(f"{waiting[0].upper()}{waiting[1:]}: it starts when one frees up", file=out)
        if no_wait and not runner.embedded:
            print(handle.run_id, file=out)
            return EXIT_OK
        progress = None if quiet else _Progress(out, len(dag.spec.tasks))
        try:
            result = handle.wait(timeout=timeout, on_progress=progress)
        except WaitTimeout:
            why = f"gave up after {timeout:g} s"
            if runner.embedded:
                _cancel_embedded(handle, why, EXIT_STILL_RUNNING)
            return still_running(handle.run_id, runner.embedded, why)
        except KeyboardInterrupt:
            if runner.embedded:
                _cancel_embedded(handle, "interrupted", EXIT_INTERRUPTED)
            still_running(handle.run_id, runner.embedded, "interrupted")
            return EXIT_INTERRUPTED
    finally:
        runner.close(wait=False)
    return print_result(result, settings.events_path)


def _cancel_embedded(handle: RunHandle, why: str, code: int) -> NoReturn:
    """An embedded run dies with this process: cancel it cleanly, say so, exit with ``code``
    now, without waiting for a step still running on the embedded worker's threads."""
    outcome = handle.cancel(force=True)
    if outcome.already_ended:
        click.echo(f"{why}: run {handle.run_id} had already ended ({outcome.status}).", err=True)
    else:
        click.echo(
            f"{why}: run {handle.run_id} ran on this process's embedded worker; it is cancelled "
            f"({len(outcome.cancelled)} tasks cancelled).",
            err=True,
        )
    exit_now(code)


def _warn_unconsumed(runner: Runner, dag: Dag) -> None:
    """Warn, in one line, when no live worker consumes a queue the DAG names.

    Only for DAGs with ``queue:`` (the check costs up to a second) and never in the
    embedded mode, whose worker consumes every queue of the DAG.
    """
    from dagflow.client.consumers import needed_queues, unconsumed

    if runner.embedded or not dag.spec.queues:
        return
    missing = unconsumed(runner.app, needed_queues(runner.app, dag.spec))
    if missing:
        names = ", ".join(missing)
        click.echo(
            f"warning: no live worker consumes queue{'s' if len(missing) > 1 else ''} {names}; "
            f"steps sent there wait until one does (celery -A dagflow worker -Q "
            f"{','.join(missing)})",
            err=True,
        )


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


COMMANDS = (plan, validate, run)
