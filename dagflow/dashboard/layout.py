"""The dashboard's components, built from analytics rows.

Every value from an event goes into a component as a child string, which React renders as
text: event text is never interpreted as HTML or Markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from dash import dcc, html

from dagflow.dashboard.figures import STATE_COLORS, dag_graph_figure, gantt_figure
from dagflow.dashboard.queue import NO_BROKER, QueueStats

Row = Mapping[str, Any]
Column = tuple[str, str, Callable[[Any], Any]]

_PAGE = {"fontFamily": "system-ui, sans-serif", "margin": "0 auto", "maxWidth": "1200px"}
_CARD = {
    "border": "1px solid #ddd",
    "borderRadius": "6px",
    "padding": "10px 16px",
    "minWidth": "150px",
    "background": "#fafafa",
}
_ROW = {"display": "flex", "gap": "12px", "flexWrap": "wrap"}
_TABLE = {"borderCollapse": "collapse", "width": "100%", "fontSize": "14px"}
_CELL = {"borderBottom": "1px solid #eee", "padding": "4px 8px", "textAlign": "left"}
HIDDEN = {"display": "none"}
SHOWN = {"display": "block"}


def plain(value: Any) -> str:
    """Format a cell: None as a dash, floats with 3 digits, everything else as ``str``."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def when(value: Any) -> str:
    """Format an ISO 8601 UTC timestamp to the second (``2026-11-26 10:00:00``)."""
    return "—" if not value else str(value).replace("T", " ")[:19]


def percent(value: Any) -> str:
    """Format a 0..1 rate as a percentage."""
    return f"{float(value) * 100:.1f}%"


def seconds(value: Any) -> str:
    """Format seconds with a unit."""
    return "—" if value is None else f"{float(value):.2f} s"


def run_link(run_id: Any) -> dcc.Link:
    """A link to a run's page; the id is URL-quoted and shown as text."""
    return dcc.Link(str(run_id)[:12], href=f"/runs/{quote(str(run_id), safe='')}")


def status(value: Any) -> html.Span:
    """A status coloured by state."""
    return html.Span(str(value), style={"color": STATE_COLORS.get(str(value), "#333")})


def table(table_id: str, columns: Sequence[Column], rows: Sequence[Row], empty: str) -> html.Div:
    """A plain HTML table; ``columns`` are ``(key, header, formatter)``."""
    if not rows:
        return html.Div(html.P(empty, className="empty"), id=table_id)
    head = html.Thead(html.Tr([html.Th(label, style=_CELL) for _, label, _ in columns]))
    body = html.Tbody(
        [
            html.Tr([html.Td(fmt(row.get(key)), style=_CELL) for key, _, fmt in columns])
            for row in rows
        ]
    )
    return html.Div(html.Table([head, body], style=_TABLE), id=table_id)


def kpi_cards(stats: Row, window_hours: float) -> list[html.Div]:
    """The four task KPI cards of the window (ids ``kpi-ok``, ``kpi-failed``, ...)."""
    cards = [
        ("kpi-ok", "✅ Tasks OK", str(stats["ok"])),
        ("kpi-failed", "❌ Tasks Failed", str(stats["failed"])),
        ("kpi-duration", "⏱️ Avg Duration", f"{stats['avg_duration_s']:.2f} s"),
        ("kpi-error-rate", "📊 Error Rate", percent(stats["error_rate"])),
    ]
    return [
        html.Div(
            [
                html.Div(f"{label} (last {window_hours:g} h)", style={"color": "#666"}),
                html.Div(value, className="kpi-value", style={"fontSize": "28px"}),
            ],
            id=card_id,
            style=_CARD,
        )
        for card_id, label, value in cards
    ]


RUN_COLUMNS: list[Column] = [
    ("run_id", "Run", run_link),
    ("dag_name", "DAG", plain),
    ("tenant", "Tenant", plain),
    ("status", "Status", status),
    ("start", "Start (UTC)", when),
    ("duration", "Duration", seconds),
    ("tasks_ok", "Tasks OK", plain),
    ("tasks_failed", "Tasks failed", plain),
    ("retries", "Retries", plain),
]
SCHEDULE_COLUMNS: list[Column] = [
    ("schedule_id", "Schedule", plain),
    ("dag", "DAG", plain),
    ("tenant", "Tenant", plain),
    ("last_run", "Last run (UTC)", when),
    ("status", "Status", status),
    ("enqueued", "Enqueued", plain),
    ("success", "Success", plain),
    ("failed", "Failed", plain),
]
TENANT_COLUMNS: list[Column] = [
    ("tenant", "Tenant", plain),
    ("runs", "Runs", plain),
    ("tasks", "Tasks", plain),
    ("error_rate", "Error rate", percent),
    ("avg_latency_s", "Avg latency", seconds),
]
JOB_COLUMNS: list[Column] = [
    ("run_id", "Job (run)", run_link),
    ("schedule", "Schedule", plain),
    ("tenant", "Tenant", plain),
    ("dag_name", "DAG", plain),
    ("status", "Status", status),
    ("start", "Start (UTC)", when),
]


def _count_card(label: str, value: object, card_id: str) -> html.Div:
    return html.Div(
        [html.Div(label, style={"color": "#666"}), html.Div(str(value), className="kpi-value")],
        id=card_id,
        style=_CARD,
    )


def queue_panel(
    stats: QueueStats | None, run_counts: Mapping[str, int], jobs: Sequence[Row]
) -> list[Any]:
    """The queue panel: Redis counts (or why there are none), run counts and recent jobs."""
    children: list[Any] = []
    if stats is None or stats.error == NO_BROKER:
        children.append(html.P("Queue stats only available with a Redis broker "
                               "(DAGFLOW_BROKER_URL)", id="queue-note"))  # fmt: skip
    elif stats.error:
        children.append(html.P(stats.error, id="queue-error", style={"color": "#c62828"}))
    cards = [
        _count_card("Running (event log)", run_counts.get("running", 0), "queue-running"),
        _count_card("Succeeded", run_counts.get("success", 0), "queue-succeeded"),
        _count_card("Failed", run_counts.get("failed", 0), "queue-failed"),
    ]
    if stats is not None and stats.collector_behind is not None:
        behind = f"{stats.collector_behind} events, {stats.collector_lag_s:g} s"
        cards.append(_count_card("Collector behind", behind, "queue-collector-lag"))
    if stats is not None and not stats.error:
        cards.insert(0, _count_card("Pending (broker)", stats.pending, "queue-pending"))
        for state, count in sorted(stats.results.items()):
            cards.append(_count_card(f"Results {state}", count, f"queue-results-{state.lower()}"))
        if stats.truncated:
            children.append(html.P("Counts are partial: Redis has more keys than one scan."))
    children.append(html.Div(cards, style=_ROW))
    children.append(table("queue-jobs", JOB_COLUMNS, jobs, "No recent jobs."))
    return children


def run_page(timeline: Row | None, run_id: str) -> list[Any]:
    """The run page: summary line, Gantt chart of attempts, the DAG graph and task errors."""
    back = dcc.Link("← all runs", href="/")
    if timeline is None:
        return [back, html.H2("Run not found"), html.P(f"No events for run {run_id}.")]
    run = timeline["run"]
    summary = (
        f"{run['dag_name']} · tenant {run['tenant']} · {run['status']} · "
        f"{seconds(run['duration'])} · {run['tasks_ok']} ok, {run['tasks_failed']} failed, "
        f"{run['tasks_skipped']} skipped, {run['retries']} retries"
    )
    failures = [a for a in timeline["attempts"] if a.get("error")]
    return [
        back,
        html.H2(f"Run {run_id}", id="run-title"),
        html.P(summary, id="run-summary"),
        dcc.Graph(id="gantt-chart", figure=gantt_figure(timeline["attempts"])),
        dcc.Graph(id="dag-graph", figure=dag_graph_figure(timeline["tasks"], timeline["edges"])),
        html.H3("Errors"),
        table(
            "run-errors",
            [
                ("task_id", "Task", plain),
                ("attempt", "Attempt", plain),
                ("worker", "Worker", plain),
                ("fence", "Lease", plain),
                ("status", "Outcome", status),
                ("error", "Error", plain),
            ],
            failures,
            "No errors.",
        ),
    ]


def app_layout(window_hours: float, refresh_s: float) -> html.Div:
    """The whole page: header, tenant filter, the overview and the (hidden) run page."""
    section = {"marginTop": "24px"}
    overview = html.Div(
        [
            html.Div(id="kpi-cards", style=_ROW),
            html.Div(
                [
                    dcc.Graph(id="runs-chart", style={"flex": "1"}),
                    dcc.Graph(id="errors-chart", style={"flex": "1"}),
                ],
                style=_ROW,
            ),
            html.H2("Recent DAG runs", style=section),
            html.Div(id="runs-panel"),
            html.H2("Queue", style=section),
            html.Div(id="queue-panel"),
            html.H2("Schedules", style=section),
            html.Div(id="schedules-panel"),
            html.H2(f"Per-tenant load (last {window_hours:g} h)", style=section),
            html.Div(id="tenants-panel"),
        ],
        id="overview-page",
    )
    header = html.Div(
        [
            html.H1(dcc.Link("dagflow", href="/"), style={"margin": "0"}),
            dcc.Dropdown(id="tenant-filter", placeholder="All tenants", style={"width": "260px"}),
            html.Span(id="read-status", style={"color": "#666", "fontSize": "13px"}),
        ],
        style={**_ROW, "alignItems": "center", "padding": "12px 0"},
    )
    return html.Div(
        [
            dcc.Location(id="url"),
            dcc.Interval(id="refresh", interval=int(refresh_s * 1000)),
            header,
            overview,
            html.Div(id="run-page", style=HIDDEN),
        ],
        style=_PAGE,
    )
