"""Pure Plotly figure builders: table rows in, ``go.Figure`` out.

Plotly renders a few HTML-like tags (``<b>``, ``<a href>``, ...) in text and labels, so every
string that comes from an event is escaped first: a task named ``<b>x</b>`` is shown as
those characters, never as markup.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from dagflow.analytics.rollup import parse_timestamp
from dagflow.dashboard.dag_layout import layered_positions

#: One colour per task or attempt state, shared by the Gantt chart, the DAG graph, the
#: tables and the run page's legend.
STATE_COLORS = {
    "success": "#2e7d32",
    "ok": "#2e7d32",
    "failed": "#c62828",
    "retry": "#ef6c00",
    "lease lost": "#8e24aa",
    "running": "#1565c0",
    "stale": "#6d4c41",
    "cancelled": "#455a64",
    "skipped": "#9e9e9e",
    "pending": "#cfd8dc",
}
#: What each colour means, in the order the run page's legend lists them.
LEGEND = {
    "ok": "attempt succeeded",
    "retry": "attempt failed, retried",
    "failed": "attempt failed for good",
    "lease lost": "worker lost its lease; another took over",
    "running": "running (up to now)",
    "cancelled": "cancelled",
    "skipped": "skipped (upstream failed)",
    "pending": "not started",
}
#: Attempt outcomes drawn in the Gantt chart, bottom layer first: an attempt that lost its
#: lease spans the takeover, so it goes under the attempt that took the step over.
GANTT_STATES = ("lease lost", "cancelled", "retry", "failed", "ok", "running", "skipped")
#: The narrowest Gantt bar, as a fraction of the chart's time span (about 6 px at 1,000 px).
MIN_BAR_FRACTION = 0.006
_MARGIN = {"l": 40, "r": 20, "t": 40, "b": 40}


def text(value: object) -> str:
    """Escape ``value`` so Plotly shows it as plain text."""
    return html.escape("" if value is None else str(value), quote=False)


def _naive_utc(value: object) -> datetime | None:
    """Plotly's date axis has no time zone: give it naive UTC datetimes."""
    moment = parse_timestamp(value)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment else None


def _base(title: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(title=title, margin=_MARGIN, height=300, template="plotly_white")
    return figure


def empty_figure(title: str, message: str) -> go.Figure:
    """A figure with no axes that says ``message`` (no data: never an axis from -1 to 1)."""
    figure = _base(title)
    figure.add_annotation(
        text=text(message), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font={"size": 16, "color": "#666"},
    )  # fmt: skip
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
    return figure


def runs_figure(
    series: Sequence[Mapping[str, Any]], empty: str = "No run finished in the window."
) -> go.Figure:
    """Stacked bars of runs that finished per time bucket (succeeded, failed).

    With no run in any bucket the figure says ``empty`` instead of drawing empty axes.
    """
    if not any(row["runs_ok"] or row["runs_failed"] for row in series):
        return empty_figure("DAG runs finished (UTC)", empty)
    figure = _base("DAG runs finished (UTC)")
    x = [_naive_utc(row["start"]) for row in series]
    for key, name in (("runs_ok", "success"), ("runs_failed", "failed")):
        figure.add_trace(
            go.Bar(x=x, y=[row[key] for row in series], name=name, marker_color=STATE_COLORS[name])
        )
    figure.update_layout(barmode="stack", yaxis_title="runs")
    return figure


def error_rate_figure(
    series: Sequence[Mapping[str, Any]], empty: str = "No task finished in the window."
) -> go.Figure:
    """Task error rate (%) per time bucket; empty buckets are gaps, not zeros.

    With no finished task in any bucket the figure says ``empty`` instead.
    """
    if not any(row["tasks_ok"] or row["tasks_failed"] for row in series):
        return empty_figure("Task error rate (%)", empty)
    figure = _base("Task error rate (%)")
    rates = [
        row["error_rate"] * 100 if row["tasks_ok"] + row["tasks_failed"] else None for row in series
    ]
    figure.add_trace(
        go.Scatter(
            x=[_naive_utc(row["start"]) for row in series],
            y=rates,
            mode="lines+markers",
            name="error rate",
            line_color="#c62828",
        )
    )
    figure.update_layout(yaxis={"title": "%", "rangemode": "tozero"})
    return figure


def gantt_figure(
    attempts: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]] = (),
    until: object = None,
    waiting: str = "No task has started.",
) -> go.Figure:
    """A Gantt chart with one bar per task attempt, so retries show as separate bars.

    Bars are coloured by outcome (:data:`STATE_COLORS`). A running attempt extends to
    ``until``; every bar is at least :data:`MIN_BAR_FRACTION` of the chart wide, so an attempt
    of a millisecond still shows. Tasks that never ran (``skipped``, ``cancelled``) get a
    bar of that minimum width where they were given up.

    Args:
        attempts: As :func:`dagflow.analytics.timeline.run_timeline` gives them.
        tasks: Its ``tasks``; only those with no attempt and an ``end`` are drawn.
        until: ISO time where running attempts stop (default: the latest time seen).
        waiting: What the chart says when nothing has started.
    """
    figure = _base("Task attempts (UTC)")
    spans: list[tuple[Mapping[str, Any], datetime, datetime | None, str]] = []
    for attempt in attempts:
        start = _naive_utc(attempt.get("start"))
        if start is not None:
            status = str(attempt.get("status") or "running")
            spans.append((attempt, start, _naive_utc(attempt.get("end")), status))
    for task in tasks:
        at = _naive_utc(task.get("end"))
        if not task.get("attempts") and at is not None:
            spans.append((task, at, at, str(task.get("state"))))
    if not spans:
        return empty_figure("Task attempts (UTC)", waiting)
    latest = max(end or start for _, start, end, _ in spans)
    horizon = max(_naive_utc(until) or latest, latest)
    first = min(start for _, start, _, _ in spans)
    least = max((horizon - first) * MIN_BAR_FRACTION, timedelta(milliseconds=1))
    first_seen: dict[str, datetime] = {}
    for row, start, _, _ in sorted(spans, key=lambda span: span[1]):
        first_seen.setdefault(text(row["task_id"]), start)
    for status in GANTT_STATES:
        rows = [span for span in spans if span[3] == status]
        if not rows:
            continue
        widths = [
            max((end or horizon) - start, least) / timedelta(milliseconds=1)
            for _, start, end, _ in rows
        ]
        figure.add_trace(
            go.Bar(
                orientation="h",
                name=status,
                y=[text(row["task_id"]) for row, _, _, _ in rows],
                base=[start for _, start, _, _ in rows],
                x=widths,
                marker_color=STATE_COLORS[status],
                opacity=0.55 if status == "lease lost" else 1.0,
                text=[f"#{row['attempt']}" if row.get("attempt") else "" for row, _, _, _ in rows],
                textposition="inside",
                customdata=[str(row["task_id"]) for row, _, _, _ in rows],
                hovertext=[_attempt_hover(row, status) for row, _, _, _ in rows],
                hoverinfo="text",
            )
        )
    figure.update_layout(
        barmode="overlay",
        height=max(250, 100 + 40 * len(first_seen)),
        uniformtext={"minsize": 9, "mode": "hide"},
        legend={"orientation": "h", "y": -0.15, "x": 0},
        xaxis={"type": "date"},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": sorted(first_seen, key=first_seen.__getitem__),
            "autorange": "reversed",
        },
    )
    return figure


def _attempt_hover(row: Mapping[str, Any], status: str) -> str:
    if not row.get("attempt"):  # a task that never ran
        lines = [f"{text(row['task_id'])}: {text(status)}"]
    else:
        lines = [
            f"{text(row['task_id'])} attempt {row['attempt']}: {text(status)}",
            f"duration {row.get('duration_s') or 0:.3f} s",
        ]
        if row.get("worker"):
            lines.append(f"worker {text(row['worker'])}, lease {text(row.get('fence'))}")
    if row.get("error"):
        lines.append(text(row["error"])[:300])
    lines.append("click for the attempts")
    return "<br>".join(lines)


def dag_graph_figure(
    tasks: Sequence[Mapping[str, Any]], edges: Sequence[tuple[str, str]]
) -> go.Figure:
    """Draw the DAG with each task coloured by its state.

    Args:
        tasks: Rows with ``task_id``, ``state`` and optionally ``attempts``, ``start`` and
            ``error`` (as :func:`dagflow.analytics.timeline.run_timeline` gives them).
        edges: ``(parent, child)`` pairs; may be empty, in which case tasks are laid out left
            to right by start time. Tasks named only by an edge are drawn as pending.
    """
    figure = _base("DAG (colour = task state)")
    rows = {str(t["task_id"]): t for t in tasks}
    for parent, child in edges:
        for name in (parent, child):
            rows.setdefault(name, {"task_id": name, "state": "pending"})
    never = "9999"
    names = sorted(
        rows, key=lambda n: (str(rows[n].get("start") or rows[n].get("end") or never), n)
    )
    if edges:
        position = layered_positions(names, edges)
    else:  # the only order the log knows is when each task started
        position = {n: (float(index), 0.0) for index, n in enumerate(names)}
    for parent, child in edges:
        (x0, y0), (x1, y1) = position[parent], position[child]
        figure.add_annotation(
            x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
            showarrow=True, arrowhead=2, arrowsize=1.2, standoff=14, startstandoff=14,
            arrowcolor="#78909c", text="",
        )  # fmt: skip
    states = [str(rows[n].get("state") or "pending") for n in names]
    figure.add_trace(
        go.Scatter(
            x=[position[n][0] for n in names],
            y=[position[n][1] for n in names],
            mode="markers+text",
            text=[text(n) for n in names],
            textposition="top center",
            marker={
                "size": 26,
                "color": [STATE_COLORS.get(s, "#cfd8dc") for s in states],
                "line": {
                    "width": [3 if (rows[n].get("attempts") or 0) > 1 else 1 for n in names],
                    "color": "#ef6c00",
                },
            },
            hovertext=[_task_hover(rows[n], s) for n, s in zip(names, states, strict=True)],
            hoverinfo="text",
            customdata=names,
            showlegend=False,
        )
    )
    xs = [x for x, _ in position.values()] or [0.0]
    ys = [y for _, y in position.values()] or [0.0]
    figure.update_layout(
        height=max(250, 120 + 70 * int(max(ys) - min(ys) + 1)),
        xaxis={"visible": False, "range": [min(xs) - 0.5, max(xs) + 0.5]},
        yaxis={"visible": False, "range": [min(ys) - 0.6, max(ys) + 0.8]},
    )
    return figure


def _task_hover(row: Mapping[str, Any], state: str) -> str:
    lines = [f"{text(row['task_id'])}: {text(state)}", f"attempts: {row.get('attempts') or 0}"]
    if row.get("error"):
        lines.append(text(row["error"])[:300])
    lines.append("click for the attempts")
    return "<br>".join(lines)
