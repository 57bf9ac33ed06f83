"""``dagflow trigger``: start the DAGs an event triggers, once per event id."""

from __future__ import annotations

import json

import click

from dagflow.cli.common import EXIT_OK, verbose_option


@click.command(
    short_help="start the DAGs whose triggers list an event, once per event id",
    epilog=(
        "\b\nExamples:\n"
        '  dagflow trigger orders.loaded --id batch-2026-01-05 --data \'{"day": "2026-01-05"}\'\n'
        "  dagflow trigger orders.loaded --id batch-2026-01-05    # again: starts nothing\n"
        "  dagflow trigger orders.loaded --id 42 --tenant acme --json"
    ),
)
@click.argument("name")
@click.option("--id", "event_id", required=True, help="the event's id: the same id starts once")
@click.option("--data", default="{}", metavar="JSON", help="the runs' params, a JSON object")
@click.option("--tenant", default=None, help="only DAGs of this tenant_id")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@verbose_option()
def trigger(name: str, event_id: str, data: str, tenant: str | None, as_json: bool) -> int:
    """Start one run of every DAG in DAGFLOW_DAGS_DIR whose triggers list the event NAME.

    DATA becomes each run's params, checked against the DAG's params: block first (a bad
    key starts nothing: one line naming the DAG file and the param, exit 2). The same
    --id again, from any host and at the same time or later (within DAGFLOW_RUN_TTL_S),
    starts nothing and prints the runs the first call started. Needs DAGFLOW_BROKER_URL.
    """
    from dagflow.client.triggers import trigger_event

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    result = trigger_event(name, event_id, payload, tenant=tenant)
    for line in result.unreadable:
        click.echo(f"warning: skipped a DAG file that cannot be loaded: {line}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    scope = f" of tenant {tenant}" if tenant else ""
    if not result.runs:
        click.echo(f"No DAG{scope} lists event {name} in its triggers: nothing started.")
        return EXIT_OK
    if result.repeat:
        click.echo(f"Event {name} (id {event_id}) was triggered before: nothing started again.")
    else:
        started = sum(run.started for run in result.runs)
        click.echo(f"Event {name} (id {event_id}): started {started} runs.")
    for run in result.runs:
        how = "started" if run.started else "started by an earlier call"
        click.echo(f"  {run.run_id}  DAG {run.dag} (tenant {run.tenant_id}): {how}")
    return EXIT_OK


COMMANDS = (trigger,)
