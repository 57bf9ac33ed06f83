"""What each dashboard callback outputs, as plain functions, and their registration.

:func:`render_overview` and :func:`render_route` take a :class:`DashboardData` and the
callback's inputs and return its outputs, so tests call them directly with a fixed clock;
:func:`register` only wires them to component ids. The overview is one callback on purpose:
every panel comes from one pass over the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import dash
import plotly.graph_objects as go
from dash import Input, Output
from dash.exceptions import PreventUpdate

from dagflow.analytics import for_tenant, schedule_by_run, summarize, summarize_schedules
from dagflow.clock import utc_now
from dagflow.dashboard import layout
from dagflow.dashboard.figures import error_rate_figure, runs_figure
from dagflow.dashboard.queue import QueueStats, redis_queue_stats, with_collector_lag
from dagflow.dashboard.sources import CachedLog
from dagflow.keys import is_redis_url
from dagflow.settings import Settings
from dagflow.timeline import run_timeline

RUN_PREFIX = "/runs/"
#: Newest events the dashboard keeps in memory (about 1 KB each).
DEFAULT_MAX_EVENTS = 100_000
#: Rows in the recent-jobs table of the queue panel.
RECENT_JOBS = 10


def probe_queue(settings: Settings) -> QueueStats | None:
    """Queue stats from a Redis broker, and the event collector's lag (None: neither)."""
    stats = None
    if settings.broker_url is not None and is_redis_url(settings.broker_url):
        stats = redis_queue_stats(settings.broker_url, settings.result_backend)
    if settings.events_sink == "stream" and not settings.embedded:
        # The panels read the collected log: say how far behind it is.
        from dagflow.runtime import store_url

        stats = with_collector_lag(stats, store_url(settings))
    return stats


@dataclass
class DashboardData:
    """Everything the callbacks read: settings, the two logs, the clock and the broker.

    Attributes:
        settings: Window, paths and broker URLs.
        events: The event log (newest events, cached).
        state: The scheduler's state store (cached).
        clock: Returns "now", the end of the KPI window; tests pass a fixed one.
        queue_probe: Reads the broker; tests pass a fake.
        runs_limit: Rows in the recent runs table.
    """

    settings: Settings
    events: CachedLog
    state: CachedLog
    clock: Callable[[], datetime] = utc_now
    queue_probe: Callable[[Settings], QueueStats | None] = probe_queue
    runs_limit: int = 15

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_events: int = DEFAULT_MAX_EVENTS,
        queue_probe: Callable[[Settings], QueueStats | None] = probe_queue,
    ) -> DashboardData:
        """Build the data sources from ``settings``."""
        return cls(
            settings=settings,
            events=CachedLog(settings.events_path, max_events),
            state=CachedLog(settings.state_path, max_events),
            clock=clock,
            queue_probe=queue_probe,
        )


@dataclass(frozen=True)
class Overview:
    """The overview callback's outputs, plus the summary they were built from."""

    kpis: list[Any]
    runs_figure: go.Figure
    errors_figure: go.Figure
    runs_panel: Any
    queue_panel: list[Any]
    schedules_panel: Any
    tenants_panel: Any
    tenant_options: list[dict[str, str]]
    read_status: str
    summary: dict[str, Any] = field(repr=False)

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The recent runs table's rows."""
        return list(self.summary["runs"])

    def outputs(self) -> tuple[Any, ...]:
        """The values in :data:`OVERVIEW_OUTPUTS` order."""
        return (
            self.kpis,
            self.runs_figure,
            self.errors_figure,
            self.runs_panel,
            self.queue_panel,
            self.schedules_panel,
            self.tenants_panel,
            self.tenant_options,
            self.read_status,
        )


OVERVIEW_OUTPUTS = [
    ("kpi-cards", "children"),
    ("runs-chart", "figure"),
    ("errors-chart", "figure"),
    ("runs-panel", "children"),
    ("queue-panel", "children"),
    ("schedules-panel", "children"),
    ("tenants-panel", "children"),
    ("tenant-filter", "options"),
    ("read-status", "children"),
]


def render_overview(data: DashboardData, tenant: str | None) -> Overview:
    """Compute every overview panel for ``tenant`` (None: all tenants)."""
    events, stats = data.events.read()
    states, _ = data.state.read()
    now = data.clock()
    window = data.settings.panel_window_h
    summary = summarize(
        for_tenant(events, tenant), window_hours=window, now=now, runs_limit=data.runs_limit
    )
    schedules = [
        row for row in summarize_schedules(states) if not tenant or row["tenant"] == tenant
    ]
    by_run = schedule_by_run(states)
    jobs = [{**run, "schedule": by_run.get(run["run_id"])} for run in summary["runs"][:RECENT_JOBS]]
    tenants = sorted({str(e.get("tenant_id") or "unknown") for e in events})
    read_status = (
        f"{stats.lines:,} events read · {stats.skipped:,} corrupt lines skipped · "
        f"updated {now:%H:%M:%S} UTC"
    )
    return Overview(
        kpis=layout.kpi_cards(summary["tasks"]["window"], window),
        runs_figure=runs_figure(summary["series"]),
        errors_figure=error_rate_figure(summary["series"]),
        runs_panel=layout.table("runs-table", layout.RUN_COLUMNS, summary["runs"], "No runs yet."),
        queue_panel=layout.queue_panel(
            data.queue_probe(data.settings), summary["run_counts"], jobs
        ),
        schedules_panel=layout.table(
            "schedules-table", layout.SCHEDULE_COLUMNS, schedules, "No schedules have run."
        ),
        tenants_panel=layout.table(
            "tenants-table", layout.TENANT_COLUMNS, summary["tenants"], "No load in the window."
        ),
        tenant_options=[{"label": t, "value": t} for t in tenants],
        read_status=read_status,
        summary=summary,
    )


def run_id_of(pathname: str | None) -> str | None:
    """Return the run id in a ``/runs/<id>`` path, or None for any other page."""
    if pathname and pathname.startswith(RUN_PREFIX) and len(pathname) > len(RUN_PREFIX):
        return unquote(pathname[len(RUN_PREFIX) :])
    return None


def render_route(
    data: DashboardData, pathname: str | None, refreshing: bool = False
) -> tuple[Any, Any, Any] | None:
    """Show the overview or a run's page for ``pathname``.

    Returns:
        ``(overview style, run page style, run page children)``, or None when this is a
        periodic refresh of a finished run's page (nothing can change; redrawing would
        reset the charts' zoom).
    """
    run_id = run_id_of(pathname)
    if run_id is None:
        return layout.SHOWN, layout.HIDDEN, []
    events, _ = data.events.read()
    timeline = run_timeline(events, run_id)
    if refreshing and (timeline is None or timeline["run"]["status"] != "running"):
        return None
    return layout.HIDDEN, layout.SHOWN, layout.run_page(timeline, run_id)


def register(app: dash.Dash, data: DashboardData) -> None:
    """Wire the render functions to ``app``'s components."""

    @app.callback(
        [Output(cid, prop) for cid, prop in OVERVIEW_OUTPUTS],
        Input("refresh", "n_intervals"),
        Input("tenant-filter", "value"),
        Input("url", "pathname"),
    )
    def overview(_tick: int | None, tenant: str | None, pathname: str | None) -> tuple[Any, ...]:
        if run_id_of(pathname) is not None:
            raise PreventUpdate
        return render_overview(data, tenant).outputs()

    @app.callback(
        Output("overview-page", "style"),
        Output("run-page", "style"),
        Output("run-page", "children"),
        Input("url", "pathname"),
        Input("refresh", "n_intervals"),
    )
    def route(pathname: str | None, _tick: int | None) -> tuple[Any, Any, Any]:
        result = render_route(data, pathname, refreshing=dash.ctx.triggered_id == "refresh")
        if result is None:
            raise PreventUpdate
        return result
