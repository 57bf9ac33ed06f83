"""What every ``dagflow`` command shares: the exit-code table and the ``--verbose`` flag.

Command modules import from here, never from :mod:`dagflow.cli` itself, which imports them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from dagflow.client.status import RunResult

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_INVALID = 2
EXIT_CONFIG = 3
EXIT_STILL_RUNNING = 4
EXIT_INTERRUPTED = 130

#: The one exit-code table of every command, as ``dagflow --help`` and the README show it.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "ok"),
    (EXIT_RUN_FAILED, "a task or a run failed"),
    (EXIT_INVALID, "invalid input: a bad DAG or schedule file, bad arguments"),
    (EXIT_CONFIG, "configuration or environment error, or a service that cannot be reached"),
    (
        EXIT_STILL_RUNNING,
        "stopped waiting (--timeout, or the run store stayed unreachable): the run goes on",
    ),
    (EXIT_INTERRUPTED, "interrupted"),
)

_VERBOSE = "dagflow.verbose"
F = TypeVar("F", bound=Callable[..., Any])


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # ``meta`` is one dict shared by the whole context tree, so the root and every
    # subcommand see the flag wherever it was given.
    if value:
        ctx.meta[_VERBOSE] = True


def verbose_option(help_text: str = "show tracebacks") -> Callable[[F], F]:
    """``--verbose``, accepted by the root group and by every command."""
    return click.option(
        "--verbose", is_flag=True, expose_value=False, callback=_set_verbose, help=help_text
    )


def is_verbose(ctx: click.Context | None = None) -> bool:
    """True when ``--verbose`` was given before or after the command name."""
    ctx = ctx or click.get_current_context()
    return bool(ctx.meta.get(_VERBOSE, False))


def print_result(result: RunResult, events_path: object) -> int:
    """Print the seed's run summary block, one line per failed task; return the exit code."""
    print("", file=sys.stdout)
    print("DAG EXECUTION COMPLETE")
    print(f"DAG: {result.dag_name}")
    print(f"Tasks Succeeded: {result.succeeded}")
    print(f"Tasks Failed: {result.failed}")
    print(f"Tasks Skipped: {result.skipped}")
    if result.cancelled:
        print(f"Tasks Cancelled: {result.cancelled}")
    print(f"Duration: {result.duration_s:.2f}s")
    print(f"Status: {result.status} (run {result.run_id})")
    for line in result.failures:
        print(line)
    if not result.ok:
        print(
            f"See the errors and tracebacks from any host: dagflow status {result.run_id} "
            f"--verbose (every event: dagflow events tail --run {result.run_id})"
        )
    return EXIT_OK if result.ok else EXIT_RUN_FAILED


def still_running(run_id: str, embedded: bool, why: str) -> int:
    """Say that this process stops waiting, and how to follow the run; return exit code 4."""
    if embedded:
        click.echo(
            f"{why}: run {run_id} ran on this process's embedded worker and stops with it.",
            err=True,
        )
        return EXIT_STILL_RUNNING
    click.echo(f"{why}: run {run_id} goes on on the workers.", err=True)
    click.echo(f"  follow it: dagflow wait {run_id}", err=True)
    click.echo(f"  cancel it: dagflow cancel {run_id}", err=True)
    return EXIT_STILL_RUNNING


def exit_now(code: int) -> NoReturn:
    """Flush what was printed and logged, and end the process with ``code`` at once.

    The embedded worker runs steps on Celery's thread pool, a ``ThreadPoolExecutor`` whose
    threads the interpreter joins at exit: a normal exit would wait for a running step to
    return (a 6 s step kept ``run --timeout 2`` alive for 6.6 s). Those steps belong to a run
    that was just cancelled and lives only in this process, so nothing is lost by not
    waiting for them.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
