"""What every ``dagflow`` command shares: the exit-code table and the ``--verbose`` flag.

Command modules import from here, never from :mod:`dagflow.cli` itself, which imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_INVALID = 2
EXIT_CONFIG = 3
EXIT_INTERRUPTED = 130

#: The one exit-code table of every command, as ``dagflow --help`` and the README show it.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "ok"),
    (EXIT_RUN_FAILED, "a task or a run failed"),
    (EXIT_INVALID, "invalid input: a bad DAG or schedule file, bad arguments"),
    (EXIT_CONFIG, "configuration or environment error, or a service that cannot be reached"),
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
