"""The dashboard's components, built from analytics rows.

Every value from an event goes into a component as a child string, which React renders as
text: event text is never interpreted as HTML or Markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from dash import dcc, html

from dagflow.analytics.rollup import STALE_AFTER_S
from dagflow.dashboard.figures import STATE_COLORS
from dagflow.stores.queue_stats import NO_BROKER, QueueStats

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
ROW = {"display": "flex", "gap": "12px", "flexWrap": "wrap"}
TABLE = {"borderCollapse": "collapse", "width": "100%", "fontSize": "14px"}
CELL = {"borderBottom": "1px solid #eee", "padding": "4px 8px", "textAlign": "left"}
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


def keep(value: Any) -> Any:
    """A cell already built as a component (or a dash when missing)."""
    return "—" if value is None else value


def short(value: Any) -> str:
    """Format a long text (an error) to its first 100 characters."""
    text = plain(value)
    return text if len(text) <= 100 else text[:99] + "…"


def run_href(run_id: Any, search: str = "", task: str | None = None) -> str:
    """The run page's address; ``search`` (the tenant filter) is kept, ``task`` selects one."""
    href = f"/runs/{quote(str(run_id), safe='')}{search}"
    if task is not None:
        href += ("&" if search else "?") + f"task={quote(task, safe='')}"
    return href


def run_link(run_id: Any, search: str = "") -> dcc.Link:
    """A link to a run's page; the id is URL-quoted and shown as text."""
    return dcc.Link(str(run_id)[:12], href=run_href(run_id, search))


def status(value: Any) -> html.Span:
    """A status coloured by state."""
    return html.Span(str(value), style={"color": STATE_COLORS.get(str(value), "#333")})


def status_cell(value: Any, run_id: Any, search: str, error: Any = None) -> Any:
    """A status; a failed (or stale) one links to its run's page, with the reason on hover."""
    if not run_id or value not in ("failed", "stale", "cancelled"):
        return status(value)
    hint = error or (f"no event for {STALE_AFTER_S / 60:g} min" if value == "stale" else "")
    return dcc.Link(
        str(value),
        href=run_href(run_id, search),
        title=str(hint),
        className=f"status-{value}",
        style={"color": STATE_COLORS.get(str(value), "#333"), "fontWeight": "bold"},
    )


def linked(rows: Sequence[Row], search: str, run_key: str = "run_id") -> list[dict[str, Any]]:
    """Rows with ``run_cell`` and ``status_cell`` built: links to the run page, tenant kept."""
    return [
        {
            **row,
            "run_cell": run_link(row[run_key], search) if row.get(run_key) else None,
            "status_cell": status_cell(
                row.get("status"), row.get(run_key), search, row.get("error")
            ),
        }
        for row in rows
    ]


def table(table_id: str, columns: Sequence[Column], rows: Sequence[Row], empty: str) -> html.Div:
    """A plain HTML table; ``columns`` are ``(key, header, formatter)``."""
    if not rows:
        return html.Div(html.P(empty, className="empty"), id=table_id)
    head = html.Thead(html.Tr([html.Th(label, style=CELL) for _, label, _ in columns]))
    body = html.Tbody(
        [
            html.Tr([html.Td(fmt(row.get(key)), style=CELL) for key, _, fmt in columns])
            for row in rows
        ]
    )
    return html.Div(html.Table([head, body], style=TABLE), id=table_id)


def icon(symbol: str, color: str) -> html.Span:
    """A round badge with an ASCII symbol: plain CSS, so it renders in any browser or font
    (emoji show as empty boxes in headless browsers and on many servers)."""
    return html.Span(
        symbol,
        className="kpi-icon",
        style={
            "display": "inline-block", "minWidth": "22px", "height": "22px", "lineHeight": "22px",
            "borderRadius": "11px", "background": color, "color": "white", "fontSize": "12px",
            "fontWeight": "bold", "textAlign": "center", "marginRight": "6px", "padding": "0 3px",
        },
    )  # fmt: skip


def kpi_cards(stats: Row, window_hours: float) -> list[html.Div]:
    """The four task KPI cards of the window (ids ``kpi-ok``, ``kpi-failed``, ...)."""
    cards = [
        ("kpi-ok", icon("OK", STATE_COLORS["ok"]), "Tasks OK", str(stats["ok"])),
        ("kpi-failed", icon("!", STATE_COLORS["failed"]), "Tasks Failed", str(stats["failed"])),
        ("kpi-duration", icon("s", STATE_COLORS["running"]), "Avg Duration",
         f"{stats['avg_duration_s']:.2f} s"),
        ("kpi-error-rate", icon("%", STATE_COLORS["retry"]), "Error Rate",
         percent(stats["error_rate"])),
    ]  # fmt: skip
    return [
        html.Div(
            [
                html.Div([badge, f"{label} (last {window_hours:g} h)"], style={"color": "#666"}),
                html.Div(value, className="kpi-value", style={"fontSize": "28px"}),
            ],
            id=card_id,
            style=_CARD,
        )
        for card_id, badge, label, value in cards
    ]


#: Columns of the runs tables; ``run_cell`` and ``status_cell`` come from :func:`linked`.
RUN_COLUMNS: list[Column] = [
    ("run_cell", "Run", keep),
    ("dag_name", "DAG", plain),
    ("tenant", "Tenant", plain),
    ("status_cell", "Status", keep),
    ("start", "Start (UTC)", when),
    ("duration", "Duration", seconds),
    ("tasks_ok", "Tasks OK", plain),
    ("tasks_failed", "Tasks failed", plain),
    ("retries", "Retries", plain),
    ("error", "Reason", short),
]
SCHEDULE_COLUMNS: list[Column] = [
    ("schedule_id", "Schedule", plain),
    ("dag", "DAG", plain),
    ("tenant", "Tenant", plain),
    ("last_run", "Last run (UTC)", when),
    ("status_cell", "Status", keep),
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


def count_card(label: str, value: object, card_id: str) -> html.Div:
    """A card with a label and a count (the queue panel's)."""
    return html.Div(
        [html.Div(label, style={"color": "#666"}), html.Div(str(value), className="kpi-value")],
        id=card_id,
        style=_CARD,
    )


def queue_panel(
    stats: QueueStats | None,
    run_counts: Mapping[str, int],
    jobs: Sequence[Any],
    search: str = "",
    tenant: str | None = None,
) -> list[Any]:
    """The queue panel: Redis counts (or why there are none), run counts and the jobs.

    Run counts come from the event log and ``jobs`` (the job cards and table of
    :mod:`dagflow.dashboard.jobs_panel`) from the job store; both follow the tenant filter.
    The broker's counts cannot be split by tenant, which the panel says when one is chosen.
    """
    children: list[Any] = []
    if stats is None or stats.error == NO_BROKER:
        children.append(html.P("Queue stats only available with a Redis broker "
                               "(DAGFLOW_BROKER_URL)", id="queue-note"))  # fmt: skip
    elif stats.error:
        children.append(html.P(stats.error, id="queue-error", style={"color": "#c62828"}))
    quiet = f"{STALE_AFTER_S / 60:g} min"
    cards = [
        count_card("Running (event in the last " + quiet + ")", run_counts.get("running", 0),
                    "queue-running"),
        count_card("Stale (no dag_done, no event for " + quiet + ")",
                    run_counts.get("stale", 0), "queue-stale"),
        count_card("Succeeded (window)", run_counts.get("success", 0), "queue-succeeded"),
        count_card("Failed (window)", run_counts.get("failed", 0), "queue-failed"),
    ]  # fmt: skip
    if run_counts.get("cancelled"):
        cards.append(count_card("Cancelled", run_counts["cancelled"], "queue-cancelled"))
    if stats is not None and stats.waiting is not None:
        waiting = stats.waiting.get(tenant, 0) if tenant else sum(stats.waiting.values())
        cards.insert(0, count_card("Waiting for a slot (max_active_runs)", waiting,
                                   "queue-waiting"))  # fmt: skip
    if stats is not None and stats.collector_behind is not None:
        behind = f"{stats.collector_behind} events, {stats.collector_lag_s:g} s"
        cards.append(count_card("Collector behind", behind, "queue-collector-lag"))
    if stats is not None and not stats.error:
        cards.insert(0, count_card("Pending (broker)", stats.pending, "queue-pending"))
        for state, count in sorted(stats.results.items()):
            cards.append(count_card(f"Results {state}", count, f"queue-results-{state.lower()}"))
        if stats.truncated:
            children.append(html.P("Counts are partial: Redis has more keys than one scan."))
        if tenant:
            children.append(html.P(f"Broker counts are for all tenants, not only {tenant}.",
                                   id="queue-all-tenants"))  # fmt: skip
    children.append(html.Div(cards, style=ROW))
    if stats is not None and stats.pools:
        children.append(pools_table(stats.pools))
    children.extend(jobs)
    return children


def pools_table(pools: Mapping[str, tuple[int, int, int]]) -> html.Div:
    """Each pool's use, for every tenant (``DAGFLOW_POOLS``; sizes as workers recorded them)."""
    columns: list[Column] = [
        ("pool", "Pool", plain),
        ("in_use", "In use", plain),
        ("size", "Size", plain),
        ("waiting", "Waiting", plain),
    ]
    rows = [
        {"pool": name, "in_use": used, "size": size, "waiting": waiting}
        for name, (used, size, waiting) in sorted(pools.items())
    ]
    return table("queue-pools", columns, rows, "No pool in use")


def app_layout(window_hours: float, refresh_s: float) -> html.Div:
    """The whole page: header, tenant filter, the overview and the (hidden) run page."""
    section = {"marginTop": "24px"}
    overview = html.Div(
        [
            html.P(id="log-note", style={"color": "#c62828"}),
            html.Div(id="kpi-cards", style=ROW),
            html.Div(
                [
                    dcc.Graph(id="runs-chart", style={"flex": "1"}),
                    dcc.Graph(id="errors-chart", style={"flex": "1"}),
                ],
                style=ROW,
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
        style={**ROW, "alignItems": "center", "padding": "12px 0"},
    )
    return html.Div(
        [
            # callback-nav: the tenant filter and the selected task change the address
            # (so a link keeps them) without reloading the page.
            dcc.Location(id="url", refresh="callback-nav"),
            dcc.Interval(id="refresh", interval=int(refresh_s * 1000)),
            header,
            overview,
            html.Div(
                [html.Div(id="run-body"), html.Div(id="task-detail")], id="run-page", style=HIDDEN
            ),
        ],
        style=_PAGE,
    )
