"""Commands about runs that already exist: ``wait``, ``status``, ``runs`` and ``outputs``.

They read the run store in Redis (``DAGFLOW_BROKER_URL`` or ``DAGFLOW_RESULT_BACKEND``), so
they work from any host, not only from the one that submitted the run. A run that is unknown
or expired is one line and exit 3; ``status`` exits 0 whatever the run's status (a query).
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from dagflow.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    is_verbose,
    print_result,
    still_running,
    verbose_option,
)
from dagflow.dag.mapping import split_instance

if TYPE_CHECKING:
    from dagflow.client.status import RunStatus
    from dagflow.stores.base import TaskInfo

#: Run statuses ``dagflow runs --status`` accepts.
RUN_STATUSES = ("pending", "running", "success", "failed", "cancelled")


@click.command(
    short_help="wait for a run started anywhere, by its id",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow wait 3f2c9e...                 # until the run ends\n"
        "  dagflow wait 3f2c9e... --timeout 600   # exit 4 if it is still running then"
    ),
)
@click.argument("run_id")
@click.option("--timeout", type=float, default=None, help="give up after this many seconds")
@verbose_option()
def wait(run_id: str, timeout: float | None) -> int:
    """Re-attach to RUN_ID and wait until it ends; print its summary.

    Works from any host that reaches the run store (DAGFLOW_BROKER_URL or
    DAGFLOW_RESULT_BACKEND). Exits 0 if the run succeeded, 1 if it failed, 4 if it was still
    running when --timeout passed. A Redis restart or a network blip while waiting is
    ridden out (reconnect with backoff).
    """
    from dagflow.client.runner import Runner, WaitTimeout
    from dagflow.settings import Settings

    settings = Settings.from_env()
    runner = Runner(settings)
    try:
        handle = runner.attach(run_id, timeout)
        try:
            result = handle.wait(timeout=timeout)
        except WaitTimeout:
            return still_running(run_id, False, f"gave up after {timeout:g} s")
        except KeyboardInterrupt:
            still_running(run_id, False, "interrupted")
            return EXIT_INTERRUPTED
    finally:
        runner.close(wait=False)
    return print_result(result, settings.events_path)


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _quiet_instance(task: TaskInfo) -> bool:
    return task.state in ("ok", "pending") and split_instance(task.task_id)[1] is not None


def _print_status(run: RunStatus, verbose: bool) -> None:
    counts = run.counts
    print(f"Run {run.run_id}: DAG '{run.dag_name}' (tenant {run.tenant_id}): {run.status}")
    print(
        f"Started {_time(run.started_at)}, finished {_time(run.finished_at)}, "
        f"duration {_seconds(run.duration_s)}"
    )
    print(
        f"Tasks: {counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed, "
        f"{counts.get('skipped', 0)} skipped, {counts.get('cancelled', 0)} cancelled "
        f"of {counts.get('total', 0)}"
    )
    if run.error:
        print(f"Error: {run.error}")
    if run.waiting_for:
        print(run.waiting_for[0].upper() + run.waiting_for[1:])
    for line in run.map_lines():
        print(f"Mapped {line}")
    # Instances that succeeded are summed up above; listed one by one only with --verbose.
    shown = [t for t in run.tasks if verbose or not _quiet_instance(t)]
    hidden = len(run.tasks) - len(shown)
    width = max([len(t.task_id) for t in shown] + [4])
    print(f"  {'TASK':<{width}}  {'STATE':<8} {'ATTEMPTS':>8}  {'DURATION':>9}  WORKER")
    if hidden:
        print(f"  ({hidden} instances that succeeded are not listed: --verbose lists them)")
    for task in shown:
        print(
            f"  {task.task_id:<{width}}  {task.state:<8} {task.attempts:>8}  "
            f"{_seconds(task.last.duration_s):>9}  {task.worker or '-'}"
        )
        if task.task_id in run.pool_waits:
            print(f"      {run.pool_waits[task.task_id]}")
        if task.last.error and task.state in ("failed", "retry", "running"):
            print(f"      {task.last.error}")
        if verbose and task.last.traceback and task.state in ("failed", "retry", "running"):
            print(textwrap.indent(task.last.traceback, "      "))
    if run.notices:
        print("Notifications:")
        for notice in run.notices:
            tries = f"{notice.attempts} attempt" + ("" if notice.attempts == 1 else "s")
            print(f"  {notice.kind} {notice.target} ({notice.trigger}): {notice.state}, {tries}")
            if notice.error and notice.state in ("failed", "retrying"):
                print(f"      {notice.error}")


@click.command(
    short_help="a run's status and each task's state, attempts and last error",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow status 3f2c9e...             # a table of the run's tasks\n"
        "  dagflow status 3f2c9e... --verbose   # with the failed attempts' tracebacks\n"
        "  dagflow status 3f2c9e... --json      # for scripts"
    ),
)
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="print the status as one JSON object")
@verbose_option("show the tracebacks of failed attempts")
def status(run_id: str, as_json: bool) -> int:
    """Show RUN_ID's status and, for each task, its state, attempts, duration, worker and
    last error.

    Works from any host that reaches the run store. Exits 0 whatever the run's status (it is
    a query; `dagflow wait` exits 1 for a failed run), 3 if the run is unknown or expired.
    """
    from dagflow.client.runner import get_run

    handle = get_run(run_id)
    run = handle.status()
    stuck = handle.unconsumed_waits()
    if as_json:
        data = run.to_dict(tracebacks=True)
        if stuck:  # only then: the rest is what GET /api/v1/runs/{id} returns too
            data["unconsumed_queues"] = stuck
        print(json.dumps(data, indent=2))
    else:
        _print_status(run, is_verbose())
        for queue, steps in stuck.items():
            more = f" and {len(steps) - 5} more" if len(steps) > 5 else ""
            print(
                f"Waiting on queue '{queue}', which no live worker consumes: "
                f"{', '.join(steps[:5])}{more} (start one: celery -A dagflow worker -Q {queue})"
            )
    return EXIT_OK


@click.command(
    "runs",
    short_help="recent runs, newest first",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow runs                                  # the 20 newest runs\n"
        "  dagflow runs --tenant acme --status failed    # acme's failed runs\n"
        "  dagflow runs --dag weekly_ops_chain --limit 5 --json"
    ),
)
@click.option("--tenant", default=None, help="only runs of this tenant_id")
@click.option("--dag", default=None, help="only runs of the DAG with this name")
@click.option("--status", "status_", type=click.Choice(RUN_STATUSES), help="only these runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@verbose_option()
def runs(
    tenant: str | None, dag: str | None, status_: str | None, limit: int, as_json: bool
) -> int:
    """List recent runs still in the run store (DAGFLOW_RUN_TTL_S), newest first.

    Works from any host that reaches the run store.
    """
    from dagflow.client.runner import list_runs

    found = list_runs(tenant=tenant, dag=dag, status=status_, limit=limit)
    if as_json:
        print(json.dumps([run.to_dict() for run in found], indent=2))
        return EXIT_OK
    if not found:
        print("no runs")
        return EXIT_OK
    print(
        f"{'RUN':<32}  {'STARTED':<20}  {'STATUS':<8}  {'TASKS':>11}  {'DURATION':>9}  DAG (TENANT)"
    )
    for run in found:
        c = run.counts
        ended = sum(c.get(k, 0) for k in ("ok", "failed", "skipped", "cancelled"))
        done = f"{ended}/{c.get('total', 0)}"
        print(
            f"{run.run_id:<32}  {_time(run.started_at):<20}  {run.status:<8}  {done:>11}  "
            f"{_seconds(run.duration_s):>9}  {run.dag_name} ({run.tenant_id})"
        )
    return EXIT_OK


@click.command(
    short_help="a run's stored outputs as JSON",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow outputs 3f2c9e...          # {task: output, ...} of every finished task\n"
        "  dagflow outputs 3f2c9e... sweep    # one task's output\n"
        "  dagflow outputs 3f2c9e... process  # a mapped task: its instances' outputs, in order\n"
        "  dagflow outputs 3f2c9e... 'process[3]'  # one instance's output"
    ),
)
@click.argument("run_id")
@click.argument("task", required=False)
@verbose_option()
def outputs(run_id: str, task: str | None) -> int:
    """Print RUN_ID's stored task outputs as one JSON object (task -> output), or TASK's
    output alone.

    Works from any host that reaches the run store. Exits 3 if the run is unknown or expired,
    2 if TASK is not a task of the run, 1 if TASK has no output (it did not succeed).
    """
    from dagflow.client.runner import get_run

    handle = get_run(run_id)
    if task is None:
        print(json.dumps(handle.outputs(), indent=2))
        return EXIT_OK
    snap = handle.snapshot(with_states=True)
    states = dict(snap.states or {}) if snap else {}
    if task not in states:
        raise click.BadParameter(f"run {run_id} has no task {task!r}", param_hint="TASK")
    found = handle.outputs([task])
    if task not in found:
        click.echo(f"task {task!r} of run {run_id} has no output (it is {states[task]})", err=True)
        return EXIT_RUN_FAILED
    value = found[task]
    plan = handle.plan()
    if plan is not None and task in plan.tasks and plan.tasks[task].map_from:
        value = value.get("results", value)  # a mapped task: its instances' outputs
    print(json.dumps(value, indent=2))
    return EXIT_OK


COMMANDS = (wait, status, runs, outputs)
