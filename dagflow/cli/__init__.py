"""The ``dagflow`` command: one click group, one module per command group, one exit-code table.

Each module of this package that defines ``COMMANDS`` (a tuple of click commands) is found
and added to the root group, so a new command group is one new file. The root group turns
the errors dagflow raises on purpose into one line per problem and an exit code from
:data:`~dagflow.cli.common.EXIT_CODES`; ``--verbose`` (before or after the command) shows
the traceback instead. Commands import the library lazily, so ``dagflow plan`` does not pay
for Celery or Dash. Nothing imports this package but the console script and ``python -m dagflow``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

import click

from dagflow.cli.common import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_RUN_FAILED,
    is_verbose,
    verbose_option,
)
from dagflow.errors import DagflowError, SpecError

__all__ = ["cli", "main"]

EXAMPLES = """\
  dagflow plan dags/weekly_ops_chain.yaml        # dry run, no server
  dagflow validate dags/*.yaml schedules/*.yaml  # for CI: exit 2 if any file is invalid
  dagflow run dags/weekly_ops_chain.yaml         # embedded worker, or DAGFLOW_BROKER_URL's
  dagflow schedule --dir schedules --once        # one scheduler tick
  dagflow dashboard --port 8050                  # the Dash dashboard on 127.0.0.1
  dagflow runs --status failed                   # recent failed runs, from any host
  dagflow jobs --status retry                    # scheduled jobs waiting for a retry
  dagflow status RUN_ID --verbose                # a run's tasks, errors and tracebacks"""


def _epilog() -> str:
    codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES)
    # "\b" keeps click from rewrapping the block that follows it.
    return f"\b\nExamples:\n{EXAMPLES}\n\n\b\nExit codes:\n{codes}"


def _is_connection_error(exc: Exception) -> bool:
    """True for errors of Redis, the broker or the network (imported here: plan stays fast)."""
    from dagflow.stores.transport import BACKEND_ERRORS

    return isinstance(exc, BACKEND_ERRORS)


def _report(line: str, code: int) -> int:
    click.echo(line, err=True)
    return code


class DagflowGroup(click.Group):
    """The root group: runs a command and maps the errors it raises to the exit-code table."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a dagflow error is one line per problem on stderr and an exit code."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except SpecError as exc:
            if is_verbose(ctx):
                raise
            return _report("\n".join(exc.lines()), EXIT_INVALID)
        except DagflowError as exc:
            if is_verbose(ctx):
                raise
            return _report(exc.one_line(), EXIT_CONFIG)
        except TimeoutError as exc:
            click.echo(f"TimeoutError: {exc}", err=True)
            return EXIT_RUN_FAILED
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return EXIT_INTERRUPTED
        except Exception as exc:
            # Redis or the broker went away mid-command: one line, not a traceback.
            if is_verbose(ctx) or not _is_connection_error(exc):
                raise
            line = f"{type(exc).__name__}: {exc} (--verbose shows the traceback)"
            return _report(line, EXIT_CONFIG)


@click.group(
    cls=DagflowGroup,
    epilog=_epilog(),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="dagflow", prog_name="dagflow")
@verbose_option("show tracebacks and worker logs")
def cli() -> None:
    """YAML DAG workflows on Celery: plan, validate and run DAGs, schedule them, watch them."""


def _add_commands(group: click.Group) -> None:
    """Add the ``COMMANDS`` of every module in this package, in module-name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            group.add_command(command)


_add_commands(cli)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dagflow`` command and ``python -m dagflow``; returns the exit code.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        An exit code from :data:`~dagflow.cli.common.EXIT_CODES`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args, prog_name="dagflow", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return EXIT_INVALID
    except click.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else EXIT_OK
