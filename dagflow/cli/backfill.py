"""``dagflow backfill``: run a schedule for the cron times of a past window, each once."""

from __future__ import annotations

import click

from dagflow.cli.common import EXIT_OK, verbose_option


@click.command(
    short_help="run a schedule for the cron times of a past window, each minute once",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow backfill nightly --from 2026-01-01 --to 2026-01-04 --dry-run\n"
        "  dagflow backfill nightly --from 2026-01-01 --to 2026-01-04 --max-active 2\n"
        "  dagflow backfill hourly --from 2026-01-05T06:00:00Z --to 2026-01-05T12:00:00Z\n"
        "  dagflow jobs --schedule nightly                  # progress: one job per minute\n"
        "  dagflow backfill --cancel 5d41402a...            # stop it as a whole"
    ),
)
@click.argument("schedule_id", required=False)
@click.option("--from", "start", metavar="T", help="first instant, included (2026-01-01 or ...Z)")
@click.option("--to", "end", metavar="T", help="end, excluded (not after now)")
@click.option("--dry-run", is_flag=True, help="list the minutes; claim and start nothing")
@click.option(
    "--max-active", type=click.IntRange(min=1), default=None, help="its runs running at once"
)
@click.option("--cancel", "cancel_id", metavar="BACKFILL_ID", help="cancel a backfill")
@click.option("--json", "as_json", is_flag=True, help="print the backfill as JSON")
@verbose_option()
def backfill(
    schedule_id: str | None,
    start: str | None,
    end: str | None,
    dry_run: bool,
    max_active: int | None,
    cancel_id: str | None,
    as_json: bool,
) -> int:
    """Make one job per cron time of SCHEDULE_ID from --from (included) to --to (excluded),
    oldest first, and start their runs with scheduled_minute set, as Beat would have.

    A minute already claimed (by Beat, dagflow schedule, or another backfill, even one
    running now) is skipped: each minute runs once. The runs wait for their slots like
    any scheduled run (SCHED_MAX_PARALLEL, the DAG's and the tenant's limits) and
    --max-active. --cancel BACKFILL_ID stops a backfill as a whole: its waiting and running
    runs are cancelled. Needs DAGFLOW_BROKER_URL (and workers to run the runs).
    """
    from dagflow.scheduling.backfill import cancel_backfill, start_backfill
    from dagflow.scheduling.backfill_window import parse_instant

    if cancel_id is not None:
        if schedule_id or start or end:
            raise click.UsageError("--cancel takes a backfill id alone")
        outcome = cancel_backfill(cancel_id)
        if as_json:
            click.echo(outcome.model_dump_json(indent=2))
            return EXIT_OK
        click.echo(
            f"Backfill {cancel_id} cancelled: {len(outcome.cancelled_runs)} runs cancelled, "
            f"{len(outcome.ended_runs)} had already ended."
        )
        return EXIT_OK
    if not schedule_id or not start or not end:
        raise click.UsageError("give SCHEDULE_ID, --from and --to (or --cancel BACKFILL_ID)")
    result = start_backfill(
        schedule_id,
        parse_instant(start, "from"),
        parse_instant(end, "to"),
        dry_run=dry_run,
        max_active=max_active,
    )
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return EXIT_OK
    window = f"{schedule_id} from {result.start} to {result.end}"
    if dry_run:
        click.echo(
            f"Dry run of {window}: {result.count('planned')} minutes would start, "
            f"{result.count('skipped')} are already claimed."
        )
    else:
        click.echo(
            f"Backfill {result.backfill_id} of {window}: {result.count('started')} jobs started, "
            f"{result.count('skipped')} minutes already claimed"
            + (f", {result.count('cancelled')} cancelled" if result.cancelled else "")
            + "."
        )
    for minute in result.minutes:
        run = f"  run {minute.run_id}" if minute.run_id else ""
        click.echo(f"  {minute.minute}  {minute.state}{run}")
    if result.backfill_id:
        click.echo(f"Progress: dagflow jobs --schedule {schedule_id}")
        click.echo(f"Cancel it: dagflow backfill --cancel {result.backfill_id}")
    return EXIT_OK


COMMANDS = (backfill,)
