"""``dagflow jobs``: the scheduled jobs in Redis, newest first (from any host).

Jobs live in Redis (``DAGFLOW_BROKER_URL`` or ``DAGFLOW_RESULT_BACKEND``); without it this
is one line and exit 3. A bad ``--status`` is one line and exit 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from dagflow.cli.common import EXIT_CONFIG, EXIT_INVALID, EXIT_OK, verbose_option

EPILOG = """\b
Examples:
  dagflow jobs                                # the 20 newest jobs
  dagflow jobs --status retry                 # jobs waiting for their next try
  dagflow jobs --schedule nightly --tenant acme --limit 5 --json

\b
Statuses: pending (waiting for a drain and a worker), running, success,
failed (after all retries, or cancelled), retry (failed, will retry)."""


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command("jobs", short_help="scheduled jobs: status, tries and last run", epilog=EPILOG)
@click.option("--schedule", default=None, help="only jobs of this schedule id")
@click.option("--tenant", default=None, help="only jobs of this tenant_id")
@click.option("--status", "status_", default=None, help="pending|running|success|failed|retry")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@verbose_option()
def jobs(
    schedule: str | None, tenant: str | None, status_: str | None, limit: int, as_json: bool
) -> int:
    """List scheduled jobs kept in Redis (DAGFLOW_RUN_TTL_S), newest first.

    Each job is one firing of a schedule: its status, its tries (one run each, a retry
    reuses what the last try finished) and the last run's id, for `dagflow status`.
    """
    from dagflow.errors import ConfigError
    from dagflow.scheduling.job import JobStatus, parse_status
    from dagflow.scheduling.job_hooks import job_store

    wanted: JobStatus | None = None
    if status_ is not None:
        try:
            wanted = parse_status(status_)
        except ValueError as exc:
            click.echo(f"dagflow jobs: --status: {exc}", err=True)
            return EXIT_INVALID
    try:
        store = job_store()
    except ConfigError as exc:
        click.echo(exc.one_line(), err=True)
        return EXIT_CONFIG
    try:
        found = store.jobs(schedule=schedule, tenant=tenant, status=wanted, limit=limit)
    finally:
        store.close()
    if as_json:
        print(json.dumps([job.to_dict() for job in found], indent=2))
        return EXIT_OK
    if not found:
        print("no jobs")
        return EXIT_OK
    print(
        f"{'JOB':<32}  {'ENQUEUED':<20}  {'STATUS':<7}  {'TRIES':>5}  {'MAX':>3}  "
        f"{'SCHEDULE':<20}  {'TENANT':<12}  {'LAST RUN':<34}  DAG"
    )
    for job in found:
        print(
            f"{job.id:<32}  {_time(job.enqueued_at):<20}  {job.status.value:<7}  "
            f"{job.tries:>5}  {job.max_retries:>3}  {job.schedule_id:<20}  {job.tenant_id:<12}  "
            f"{job.last_run_id or '-':<34}  {job.dag_path}"
        )
    return EXIT_OK


@click.command(
    "rerun-job",
    short_help="give a failed job one more try, from its last run",
    epilog="\b\nExample:\n  dagflow rerun-job 5d41402abc4b2a76b9719d911017c592",
)
@click.argument("job_id")
@verbose_option()
def rerun_job(job_id: str) -> int:
    """Give the FAILED job JOB_ID one more try now, from its last run.

    The try reuses the tasks the last run finished and is linked to the job, like an
    automatic retry. Prints the new run's id (follow it with `dagflow wait`). Exits 3 if
    the job is unknown, expired or not FAILED.
    """
    from dagflow.client.runner import Runner
    from dagflow.scheduling.job_hooks import rerun_job as rerun
    from dagflow.settings import Settings

    settings = Settings.from_env()
    if settings.embedded:
        from dagflow.errors import ConfigError
        from dagflow.scheduling.job_hooks import NO_REDIS

        raise ConfigError(NO_REDIS)
    runner = Runner(settings)
    try:
        run_id = rerun(runner.app, runner.runtime, job_id)
    finally:
        runner.close(wait=False)
    print(f"job {job_id}: new try started, run {run_id}")
    return EXIT_OK


COMMANDS = (jobs, rerun_job)
