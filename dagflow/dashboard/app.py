"""Build the Dash app and serve it: ``dagflow dashboard`` / ``python -m dagflow.dashboard``.

The app is always served by a production WSGI server (waitress when installed, else Flask's
own server), never in Dash debug mode: debug mode runs a code reloader and shows tracebacks,
which must not face a network. It binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import dash

from dagflow.clock import utc_now
from dagflow.dashboard.auth import install_basic_auth
from dagflow.dashboard.callbacks import DEFAULT_MAX_EVENTS, DashboardData, probe_queue, register
from dagflow.dashboard.layout import app_layout
from dagflow.dashboard.queue import QueueStats
from dagflow.errors import DagflowError
from dagflow.settings import Settings

#: Seconds between refreshes of the open page.
DEFAULT_REFRESH_S = 15.0
EXIT_OK, EXIT_CONFIG = 0, 2

EXAMPLES = """examples:
  dagflow dashboard                                   # http://127.0.0.1:8050
  dagflow dashboard --host 0.0.0.0 --port 9000        # listen on every interface
  DAGFLOW_DASHBOARD_AUTH=ops:secret dagflow dashboard  # require basic auth
  dagflow dashboard --events /var/log/dagflow/events.jsonl --state /var/log/dagflow/state.jsonl
"""


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    max_events: int = DEFAULT_MAX_EVENTS,
    refresh_s: float = DEFAULT_REFRESH_S,
    queue_probe: Callable[[Settings], QueueStats | None] = probe_queue,
) -> dash.Dash:
    """Build the dashboard for ``settings`` (default: :meth:`Settings.from_env`).

    Args:
        settings: Paths, KPI window, broker URLs and ``dashboard_auth``.
        clock: Returns "now", the end of the KPI window.
        max_events: Newest events kept in memory.
        refresh_s: Seconds between page refreshes.
        queue_probe: Reads queue stats from the broker (tests pass a fake).

    Raises:
        ConfigError: ``DAGFLOW_DASHBOARD_AUTH`` is set but not ``user:password``.
    """
    settings = settings or Settings.from_env()
    data = DashboardData.from_settings(
        settings, clock=clock, max_events=max_events, queue_probe=queue_probe
    )
    app = dash.Dash(__name__, title="dagflow", update_title="", serve_locally=True)
    app.layout = app_layout(settings.panel_window_h, refresh_s)
    install_basic_auth(app.server, settings.dashboard_auth)
    register(app, data)
    return app


def serve(app: dash.Dash, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until interrupted, without debug mode."""
    try:
        from waitress import serve as waitress_serve  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - waitress is optional
        app.server.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
        return
    waitress_serve(app.server, host=host, port=port, threads=8, ident="dagflow")


def parser() -> argparse.ArgumentParser:
    """The command line of ``dagflow dashboard``."""
    cli = argparse.ArgumentParser(
        prog="dagflow dashboard",
        description="Serve the dagflow dashboard (runs, schedules, tenants, queue, run pages).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument("--host", help="address to bind (DAGFLOW_DASHBOARD_HOST, 127.0.0.1)")
    cli.add_argument("--port", type=int, help="port (DAGFLOW_DASHBOARD_PORT, 8050)")
    cli.add_argument("--events", type=Path, help="event log (ORCH_EVENTS_PATH)")
    cli.add_argument("--state", type=Path, help="scheduler state store (STATE_STORE_PATH)")
    cli.add_argument("--window-hours", type=int, help="KPI window (ORCH_PANEL_WINDOW_H, 24)")
    cli.add_argument(
        "--max-events",
        type=int,
        default=DEFAULT_MAX_EVENTS,
        help=f"newest events kept in memory (default {DEFAULT_MAX_EVENTS:,})",
    )
    cli.add_argument(
        "--refresh", type=float, default=DEFAULT_REFRESH_S, help="seconds between refreshes"
    )
    return cli


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, build the app and serve it. Returns an exit code."""
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        overrides = {
            "dashboard_host": args.host,
            "dashboard_port": args.port,
            "events_path": args.events,
            "state_path": args.state,
            "panel_window_h": args.window_hours,
        }
        settings = dataclasses.replace(
            settings, **{k: v for k, v in overrides.items() if v is not None}
        )
        app = create_app(settings, max_events=args.max_events, refresh_s=args.refresh)
    except DagflowError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"dagflow dashboard on http://{settings.dashboard_host}:{settings.dashboard_port} "
        f"(events: {settings.events_path}, state: {settings.state_path})",
        flush=True,
    )
    serve(app, settings.dashboard_host, settings.dashboard_port)
    return EXIT_OK
