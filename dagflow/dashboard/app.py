"""Build the Dash app and serve it (``dagflow dashboard``, in :mod:`dagflow.cli.dashboard`).

The app is always served by a production WSGI server (waitress when installed, else Flask's
own server), never in Dash debug mode: debug mode runs a code reloader and shows tracebacks,
which must not face a network. It binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import dash

from dagflow.clock import utc_now
from dagflow.dashboard.actions import ActionGuard, install_actions
from dagflow.dashboard.auth import install_basic_auth
from dagflow.dashboard.callbacks import DEFAULT_MAX_EVENTS, DashboardData, probe_queue, register
from dagflow.dashboard.layout import app_layout
from dagflow.settings import Settings
from dagflow.stores.queue_stats import QueueStats

#: Seconds between refreshes of the open page.
DEFAULT_REFRESH_S = 15.0


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    max_events: int = DEFAULT_MAX_EVENTS,
    refresh_s: float = DEFAULT_REFRESH_S,
    queue_probe: Callable[[Settings], QueueStats | None] = probe_queue,
    guard: ActionGuard | None = None,
) -> dash.Dash:
    """Build the dashboard for ``settings`` (default: :meth:`Settings.from_env`).

    Args:
        settings: Paths, KPI window, broker URLs and ``dashboard_auth``.
        clock: Returns "now", the end of the KPI window.
        max_events: Newest events kept in memory.
        refresh_s: Seconds between page refreshes.
        queue_probe: Reads queue stats from the broker (tests pass a fake).
        guard: Whether the run page offers Cancel and Retry, and their tokens (default:
            :meth:`ActionGuard.for_settings`).

    Raises:
        ConfigError: ``DAGFLOW_DASHBOARD_AUTH`` is set but not ``user:password``.
    """
    settings = settings or Settings.from_env()
    guard = guard or ActionGuard.for_settings(settings)
    data = DashboardData.from_settings(
        settings, clock=clock, max_events=max_events, queue_probe=queue_probe, guard=guard
    )
    # The run page's charts exist only while it is shown: their click callbacks are
    # registered before the components are.
    app = dash.Dash(
        __name__,
        title="dagflow",
        update_title="",
        serve_locally=True,
        suppress_callback_exceptions=True,
    )
    app.layout = app_layout(settings.panel_window_h, refresh_s)
    install_basic_auth(app.server, settings.dashboard_auth)
    install_actions(app.server, settings, guard)
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
