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
from urllib.parse import parse_qsl, unquote, urlencode

import dash
import plotly.graph_objects as go
from dash import Input, Output, State
from dash.exceptions import PreventUpdate

from dagflow.analytics.tables import summarize, summarize_schedules
from dagflow.analytics.timeline import run_timeline
from dagflow.clock import utc_now
from dagflow.dashboard import layout, run_page
from dagflow.dashboard.actions import ActionGuard, buttons
from dagflow.dashboard.figures import error_rate_figure, runs_figure
from dagflow.dashboard.jobs_panel import JobsView, jobs_section, probe_jobs
from dagflow.dashboard.sources import CachedLog
from dagflow.keys import is_redis_url
from dagflow.settings import Settings
from dagflow.stores.queue_stats import (
    QueueStats,
    redis_queue_stats,
    with_collector_lag,
    with_pools,
)

RUN_PREFIX = "/runs/"
#: Run statuses whose page is redrawn at every refresh.
ACTIVE = ("running", "stale")
#: Newest events the dashboard keeps in memory (about 1 KB each).
DEFAULT_MAX_EVENTS = 100_000


def probe_queue(settings: Settings) -> QueueStats | None:
    """Queue stats from a Redis broker, and the event collector's lag (None: neither)."""
    stats = None
    if settings.broker_url is not None and is_redis_url(settings.broker_url):
        stats = redis_queue_stats(
            settings.broker_url, settings.result_backend, master_name=settings.redis_master_name
        )
    if settings.events_via_stream:
        # The panels read the collected log: say how far behind it is.
        stats = with_collector_lag(stats, settings.require_redis_url(), settings.redis_master_name)
    if settings.redis_url is not None:
        stats = with_pools(stats, settings.redis_url, settings.redis_master_name)
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
        jobs_probe: Reads the jobs of a tenant (None: all) from Redis; tests pass a fake.
        runs_limit: Rows in the recent runs table.
        guard: Whether run pages offer Cancel and Retry (None: they do not).
    """

    settings: Settings
    events: CachedLog
    state: CachedLog
    clock: Callable[[], datetime] = utc_now
    queue_probe: Callable[[Settings], QueueStats | None] = probe_queue
    jobs_probe: Callable[[Settings, str | None], JobsView | None] = probe_jobs
    runs_limit: int = 15
    guard: ActionGuard | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_events: int = DEFAULT_MAX_EVENTS,
        queue_probe: Callable[[Settings], QueueStats | None] = probe_queue,
        guard: ActionGuard | None = None,
    ) -> DashboardData:
        """Build the data sources from ``settings``."""
        return cls(
            settings=settings,
            events=CachedLog(settings.events_path, max_events),
            state=CachedLog(settings.state_path, max_events),
            clock=clock,
            queue_probe=queue_probe,
            guard=guard,
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
    log_note: str
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
            self.log_note,
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
    ("log-note", "children"),
]


def query(search: str | None) -> dict[str, str]:
    """The parameters of a ``?a=1&b=2`` query string."""
    return dict(parse_qsl((search or "").lstrip("?")))


def with_query(search: str | None, **params: str | None) -> str:
    """``search`` with ``params`` set (None or empty: removed); ``""`` when none is left."""
    merged = {**query(search), **params}
    kept = {k: v for k, v in merged.items() if v}
    return "?" + urlencode(kept) if kept else ""


def tenant_of(search: str | None) -> str | None:
    """The tenant filter in the address (``?tenant=acme``), or None for all tenants."""
    return query(search).get("tenant") or None


def log_note(data: DashboardData, lines: int) -> str:
    """Why the overview is empty, when the event log is missing or empty ("" otherwise)."""
    path = data.settings.events_path
    if not path.exists():
        return f"No event log at {path} yet: no run has been recorded."
    if lines == 0:
        return f"The event log {path} is empty: no run has been recorded yet."
    return ""


def render_overview(data: DashboardData, tenant: str | None) -> Overview:
    """Compute every overview panel for ``tenant`` (None: all tenants).

    Every panel built from the logs follows the filter (KPIs, charts, runs, run counts,
    jobs, schedules, tenants); only the tenant list and the broker's counts do not.
    """
    events, stats = data.events.read()
    states, _ = data.state.read()
    now = data.clock()
    window = data.settings.panel_window_h
    summary = summarize(
        events, window_hours=window, now=now, runs_limit=data.runs_limit, tenant=tenant
    )
    search = with_query("", tenant=tenant)
    schedules = [
        row for row in summarize_schedules(states) if not tenant or row["tenant"] == tenant
    ]
    jobs = jobs_section(data.jobs_probe(data.settings, tenant), search, data.guard)
    tenants = sorted({*summary["tenant_ids"], *([tenant] if tenant else [])})
    read_status = (
        f"{stats.lines:,} events read · {stats.skipped:,} corrupt lines skipped · "
        f"updated {now:%H:%M:%S} UTC"
    )
    note = log_note(data, stats.lines)
    return Overview(
        kpis=layout.kpi_cards(summary["tasks"]["window"], window),
        runs_figure=runs_figure(
            summary["series"], note or f"No run finished in the last {window:g} h."
        ),
        errors_figure=error_rate_figure(
            summary["series"], note or f"No task finished in the last {window:g} h."
        ),
        runs_panel=layout.table(
            "runs-table",
            layout.RUN_COLUMNS,
            layout.linked(summary["runs"], search),
            note or "No runs yet.",
        ),
        queue_panel=layout.queue_panel(
            data.queue_probe(data.settings), summary["run_counts"], jobs, search, tenant
        ),
        schedules_panel=layout.table(
            "schedules-table",
            layout.SCHEDULE_COLUMNS,
            layout.linked(schedules, search, run_key="last_run_id"),
            "No schedules have run.",
        ),
        tenants_panel=layout.table(
            "tenants-table", layout.TENANT_COLUMNS, summary["tenants"], "No load in the window."
        ),
        tenant_options=[{"label": t, "value": t} for t in tenants],
        read_status=read_status,
        log_note=note,
        summary=summary,
    )


def run_id_of(pathname: str | None) -> str | None:
    """Return the run id in a ``/runs/<id>`` path, or None for any other page."""
    if pathname and pathname.startswith(RUN_PREFIX) and len(pathname) > len(RUN_PREFIX):
        return unquote(pathname[len(RUN_PREFIX) :])
    return None


def render_route(
    data: DashboardData, pathname: str | None, refreshing: bool = False, search: str | None = ""
) -> tuple[Any, Any, Any] | None:
    """Show the overview or a run's page for ``pathname``.

    Returns:
        ``(overview style, run page style, run page children)``, or None when this is a
        periodic refresh of a finished run's page (nothing can change; redrawing would
        reset the charts' zoom). A run not in the log yet (a retry just started) is looked
        for again at every refresh.
    """
    run_id = run_id_of(pathname)
    if run_id is None:
        return layout.SHOWN, layout.HIDDEN, []
    events, _ = data.events.read()
    timeline = run_timeline(events, run_id, now=data.clock())
    if refreshing and timeline is not None and timeline["run"]["status"] not in ACTIVE:
        return None
    back = with_query("", tenant=tenant_of(search))
    actions = buttons(data.guard, run_id, timeline["run"]["status"]) if timeline else []
    return layout.HIDDEN, layout.SHOWN, run_page.run_page(timeline, run_id, back, actions)


def render_task_detail(data: DashboardData, pathname: str | None, search: str | None) -> Any:
    """The attempts of the task in ``?task=`` on a run's page; without one, the first task
    that failed (what an operator opening a failed run wants to see)."""
    run_id = run_id_of(pathname)
    if run_id is None:
        return []
    events, _ = data.events.read()
    timeline = run_timeline(events, run_id, now=data.clock())
    if timeline is None:
        return []
    task = query(search).get("task")
    if task is None:
        task = next((t["task_id"] for t in timeline["tasks"] if t["state"] == "failed"), None)
    return run_page.task_detail(timeline, task)


def clicked_task(*click_data: Any) -> str | None:
    """The task id of a click on the Gantt chart or the DAG graph (their ``customdata``)."""
    for data in click_data:
        points = (data or {}).get("points") or []
        if points and points[0].get("customdata") is not None:
            return str(points[0]["customdata"])
    return None


def tenant_options(data: DashboardData, tenant: str | None) -> list[dict[str, str]]:
    """The dropdown's choices: every tenant in the log, and ``tenant`` even if it is not."""
    events, _ = data.events.read()
    tenants = {str(e.get("tenant_id") or "unknown") for e in events}
    return [{"label": t, "value": t} for t in sorted(tenants | ({tenant} if tenant else set()))]


def sync_tenant(
    data: DashboardData, trigger: str | None, search: str | None, tenant: str | None
) -> tuple[Any, Any, Any]:
    """Keep the tenant dropdown and ``?tenant=`` equal.

    The address wins when it changed (a link, the back button, a page load): the dropdown
    gets its tenant, and its options (a dropdown drops a value that is not among them); the
    dropdown wins when the user picked a tenant.

    Returns:
        ``(new search, new dropdown value, new options)``; ``dash.no_update`` where unchanged.
    """
    if trigger == "tenant-filter":
        new = with_query(search, tenant=tenant)
        return (dash.no_update if new == (search or "") else new), dash.no_update, dash.no_update
    wanted = tenant_of(search)
    if wanted == tenant:
        return dash.no_update, dash.no_update, dash.no_update
    return dash.no_update, wanted, tenant_options(data, wanted)


def register(app: dash.Dash, data: DashboardData) -> None:
    """Wire the render functions to ``app``'s components."""

    @app.callback(
        Output("url", "search", allow_duplicate=True),
        Output("tenant-filter", "value"),
        Output("tenant-filter", "options", allow_duplicate=True),
        Input("url", "search"),
        Input("tenant-filter", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def tenant_in_url(search: str | None, tenant: str | None) -> tuple[Any, Any, Any]:
        return sync_tenant(data, dash.ctx.triggered_id, search, tenant)

    @app.callback(
        [Output(cid, prop) for cid, prop in OVERVIEW_OUTPUTS],
        Input("refresh", "n_intervals"),
        Input("url", "search"),
        Input("url", "pathname"),
    )
    def overview(_tick: int | None, search: str | None, pathname: str | None) -> tuple[Any, ...]:
        if run_id_of(pathname) is not None:
            raise PreventUpdate
        return render_overview(data, tenant_of(search)).outputs()

    @app.callback(
        Output("overview-page", "style"),
        Output("run-page", "style"),
        Output("run-body", "children"),
        Input("url", "pathname"),
        Input("refresh", "n_intervals"),
        State("url", "search"),
    )
    def route(pathname: str | None, _tick: int | None, search: str | None) -> tuple[Any, ...]:
        refreshing = dash.ctx.triggered_id == "refresh"
        result = render_route(data, pathname, refreshing=refreshing, search=search)
        if result is None:
            raise PreventUpdate
        return result

    @app.callback(
        Output("task-detail", "children"),
        Input("url", "pathname"),
        Input("url", "search"),
        Input("refresh", "n_intervals"),
    )
    def task_detail(pathname: str | None, search: str | None, _tick: int | None) -> Any:
        return render_task_detail(data, pathname, search)

    @app.callback(
        Output("url", "search", allow_duplicate=True),
        Input("gantt-chart", "clickData"),
        Input("dag-graph", "clickData"),
        State("url", "search"),
        prevent_initial_call=True,
    )
    def select_task(gantt: Any, dag: Any, search: str | None) -> Any:
        triggered = dash.ctx.triggered_id
        task = clicked_task(gantt if triggered == "gantt-chart" else dag)
        if task is None:
            raise PreventUpdate
        return with_query(search, task=task)
