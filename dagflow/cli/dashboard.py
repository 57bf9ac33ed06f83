"""``dagflow dashboard``: serve the Dash dashboard (the app itself is :mod:`dagflow.dashboard`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from dagflow.cli.common import EXIT_OK, verbose_option

#: Shown in ``--help`` without importing Dash; a unit test keeps them equal to the app's.
MAX_EVENTS_HELP = "100,000"
REFRESH_HELP = "15"

EPILOG = """\b
Examples:
  dagflow dashboard                                   # http://127.0.0.1:8050
  dagflow dashboard --host 0.0.0.0 --port 9000        # listen on every interface
  DAGFLOW_DASHBOARD_AUTH=ops:secret dagflow dashboard  # require basic auth
  dagflow dashboard --events /var/log/dagflow/events.jsonl --state /var/log/dagflow/state.jsonl
"""


@click.command(short_help="serve the Dash dashboard on 127.0.0.1:8050", epilog=EPILOG)
@click.option("--host", help="address to bind (DAGFLOW_DASHBOARD_HOST, 127.0.0.1)")
@click.option("--port", type=int, help="port (DAGFLOW_DASHBOARD_PORT, 8050)")
@click.option("--events", type=click.Path(path_type=Path), help="event log (ORCH_EVENTS_PATH)")
@click.option(
    "--state", type=click.Path(path_type=Path), help="scheduler state store (STATE_STORE_PATH)"
)
@click.option("--window-hours", type=int, help="KPI window (ORCH_PANEL_WINDOW_H, 24)")
@click.option(
    "--max-events", type=int, help=f"newest events kept in memory (default {MAX_EVENTS_HELP})"
)
@click.option("--refresh", type=float, help=f"seconds between refreshes (default {REFRESH_HELP})")
@verbose_option()
def dashboard(
    host: str | None,
    port: int | None,
    events: Path | None,
    state: Path | None,
    window_hours: int | None,
    max_events: int | None,
    refresh: float | None,
) -> int:
    """Serve the dagflow dashboard (runs, schedules, tenants, queue, run pages).

    It is served by waitress, never in Dash debug mode, on 127.0.0.1 unless told otherwise.
    """
    from dagflow.dashboard.app import DEFAULT_REFRESH_S, create_app, serve
    from dagflow.dashboard.callbacks import DEFAULT_MAX_EVENTS
    from dagflow.settings import Settings

    settings = Settings.from_env()
    overrides: dict[str, Any] = {
        "dashboard_host": host,
        "dashboard_port": port,
        "events_path": events,
        "state_path": state,
        "panel_window_h": window_hours,
    }
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    app = create_app(
        settings,
        max_events=DEFAULT_MAX_EVENTS if max_events is None else max_events,
        refresh_s=DEFAULT_REFRESH_S if refresh is None else refresh,
    )
    print(
        f"dagflow dashboard on http://{settings.dashboard_host}:{settings.dashboard_port} "
        f"(events: {settings.events_path}, state: {settings.state_path})",
        flush=True,
    )
    serve(app, settings.dashboard_host, settings.dashboard_port)
    return EXIT_OK


COMMANDS = (dashboard,)
