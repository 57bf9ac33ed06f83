"""``dagflow cancel`` and ``dagflow retry``: commands that change a run started anywhere.

Like ``status``, they reach the run store in Redis (``DAGFLOW_BROKER_URL`` or
``DAGFLOW_RESULT_BACKEND``), so they work from any host. Cancelling a run that already
ended changes nothing, says so and exits 0.
"""

from __future__ import annotations

import sys

import click

from dagflow.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    print_result,
    still_running,
    verbose_option,
)


@click.command(
    short_help="cancel a run: pending steps never start, running ones are interrupted",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow cancel 3f2c9e...     # from any host that reaches the run store\n"
        "  dagflow retry 3f2c9e...      # later: run what did not succeed again"
    ),
)
@click.argument("run_id")
@verbose_option()
def cancel(run_id: str) -> int:
    """Cancel RUN_ID: its steps that have not started never start, its running steps are
    interrupted (prefork workers: the pool process is terminated; thread pools: at the
    step's commit) and end as cancelled; the run ends with status cancelled.

    Exits 0 (also when the run had already ended: then nothing changes and it says so),
    3 if the run is unknown or expired.
    """
    from dagflow.client.runner import get_run

    handle = get_run(run_id)
    try:
        outcome = handle.cancel()
    finally:
        handle.runner.close(wait=False)
    if outcome.already_ended:
        print(f"run {run_id} already ended ({outcome.status}): nothing to cancel")
        return EXIT_OK
    interrupted = ", ".join(outcome.interrupted) or "none"
    print(
        f"run {run_id} cancelled: {len(outcome.cancelled)} tasks cancelled before they "
        f"started; running steps interrupted: {interrupted}"
    )
    if outcome.interrupted:
        print(f"  the run ends once they stop: dagflow wait {run_id}")
    return EXIT_OK


@click.command(
    short_help="run a failed or cancelled run again, reusing what succeeded",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow retry 3f2c9e...              # wait for the new run\n"
        "  dagflow retry 3f2c9e... --no-wait    # print the new run's id"
    ),
)
@click.argument("run_id")
@click.option("--no-wait", is_flag=True, help="print the new run's id and return")
@click.option("--timeout", type=float, default=None, help="give up after this many seconds")
@verbose_option()
def retry(run_id: str, no_wait: bool, timeout: float | None) -> int:
    """Start a new run of RUN_ID's DAG that reuses the outputs of the tasks that succeeded
    and runs the failed, skipped and cancelled ones again (rebuilt from the stored plan:
    the DAG file is not read). The new run's labels and dag_start name it retry_of.

    Exits like `dagflow wait` for the new run; 3 if RUN_ID is unknown, still running or
    succeeded.
    """
    from dagflow.client.runner import WaitTimeout, get_run

    handle = get_run(run_id)
    try:
        new = handle.retry()
        print(f"Run {new.run_id}: retry of {run_id}")
        if no_wait:
            print(new.run_id)
            return EXIT_OK
        try:
            result = new.wait(timeout=timeout)
        except WaitTimeout:
            return still_running(new.run_id, False, f"gave up after {timeout:g} s")
        except KeyboardInterrupt:
            still_running(new.run_id, False, "interrupted")
            return EXIT_INTERRUPTED
    finally:
        handle.runner.close(wait=False)
    sys.stdout.flush()
    return print_result(result, None)


COMMANDS = (cancel, retry)
