"""Commands about runs that already exist: ``dagflow wait RUN_ID``."""

from __future__ import annotations

import click

from dagflow.cli.common import EXIT_INTERRUPTED, print_result, still_running, verbose_option


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
    from dagflow.runner import Runner, WaitTimeout
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


COMMANDS = (wait,)
