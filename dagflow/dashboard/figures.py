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

from dagflow.rollup import parse_timestamp

#: One colour per task or attempt state, shared by the Gantt chart and the DAG graph.
STATE_COLORS = {
    "success": "#2e7d32",
    "ok": "#2e7d32",
    "failed": "#c62828",
    "retry": "#ef6c00",
    "running": "#1565c0",
    "skipped": "#9e9e9e",
    "pending": "#cfd8dc",
}
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


def runs_figure(series: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Stacked bars of runs that finished per time bucket (succeeded, failed)."""
    figure = _base("DAG runs finished (UTC)")
    x = [_naive_utc(row["start"]) for row in series]
    for key, name in (("runs_ok", "success"), ("runs_failed", "failed")):
        figure.add_trace(
            go.Bar(x=x, y=[row[key] for row in series], name=name, marker_color=STATE_COLORS[name])
        )
    figure.update_layout(barmode="stack", yaxis_title="runs")
    return figure


def error_rate_figure(series: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Task error rate (%) per time bucket; empty buckets are gaps, not zeros."""
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


def gantt_figure(attempts: Sequence[Mapping[str, Any]]) -> go.Figure:
    """A Gantt chart with one bar per task attempt, so retries show as separate bars.

    Bars are coloured by outcome (ok, retry, failed, running); a running attempt extends to
    the latest time the run has reported.
    """
    figure = _base("Task attempts (UTC)")
    spans = []
    for attempt in attempts:
        start = _naive_utc(attempt.get("start"))
        if start is not None:
            spans.append((attempt, start, _naive_utc(attempt.get("end"))))
    horizon = max((end or start for _, start, end in spans), default=None)
    order: list[str] = []
    for status in ("ok", "retry", "failed", "running"):
        rows = [span for span in spans if span[0].get("status") == status]
        if not rows:
            continue
        for attempt, _, _ in rows:
            if text(attempt["task_id"]) not in order:
                order.append(text(attempt["task_id"]))
        widths = [
            max(((end or horizon or start) - start) / timedelta(milliseconds=1), 1.0)
            for _, start, end in rows
        ]
        figure.add_trace(
            go.Bar(
                orientation="h",
                name=status,
                y=[text(a["task_id"]) for a, _, _ in rows],
                base=[start for _, start, _ in rows],
                x=widths,
                marker_color=STATE_COLORS[status],
                text=[f"#{a['attempt']}" for a, _, _ in rows],
                hovertext=[_attempt_hover(a) for a, _, _ in rows],
                hoverinfo="text",
            )
        )
    first_start = {text(a["task_id"]): s for a, s, _ in sorted(spans, key=lambda r: r[1])}
    figure.update_layout(
        barmode="overlay",
        height=max(250, 60 + 40 * len(order)),
        xaxis={"type": "date"},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": sorted(order, key=lambda t: first_start.get(t, datetime.max)),
            "autorange": "reversed",
        },
    )
    return figure


def _attempt_hover(attempt: Mapping[str, Any]) -> str:
    lines = [
        f"{text(attempt['task_id'])} attempt {attempt['attempt']}: {text(attempt.get('status'))}",
        f"duration {attempt.get('duration_s') or 0:.3f} s",
    ]
    if attempt.get("error"):
        lines.append(text(attempt["error"])[:300])
    return "<br>".join(lines)


def _levels(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth of each node; nodes caught in a cycle stay at depth 0."""
    level = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):  # Bellman-Ford style relaxation: bounded, cycle-safe
        changed = False
        for parent, child in edges:
            if level[child] < level[parent] + 1 <= len(nodes):
                level[child] = level[parent] + 1
                changed = True
        if not changed:
            break
    return level


def dag_graph_figure(
    tasks: Sequence[Mapping[str, Any]], edges: Sequence[tuple[str, str]]
) -> go.Figure:
    """Draw the DAG with each task coloured by its state.

    Args:
        tasks: Rows with ``task_id``, ``state`` and optionally ``attempts``, ``start`` and
            ``error`` (as :func:`dagflow.timeline.run_timeline` gives them).
        edges: ``(parent, child)`` pairs; may be empty, in which case tasks are laid out left
            to right by start time. Tasks named only by an edge are drawn as pending.
    """
    figure = _base("DAG (colour = task state)")
    rows = {str(t["task_id"]): t for t in tasks}
    for parent, child in edges:
        for name in (parent, child):
            rows.setdefault(name, {"task_id": name, "state": "pending"})
    never = "9999"
    names = sorted(rows, key=lambda n: (str(rows[n].get("start") or never), n))
    # Without edges, the only order the log knows is when each task started.
    level = _levels(names, edges) if edges else {n: index for index, n in enumerate(names)}
    rank: dict[int, int] = {}
    position: dict[str, tuple[float, float]] = {}
    for name in names:
        slot = rank.get(level[name], 0)
        rank[level[name]] = slot + 1
        position[name] = (float(level[name]), -float(slot))
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
            showlegend=False,
        )
    )
    depth = max(rank.values(), default=1)
    figure.update_layout(
        height=max(250, 120 + 70 * depth),
        xaxis={"visible": False, "range": [-0.5, max(level.values(), default=0) + 0.5]},
        yaxis={"visible": False, "range": [-depth + 0.4, 0.8]},
    )
    return figure


def _task_hover(row: Mapping[str, Any], state: str) -> str:
    lines = [f"{text(row['task_id'])}: {text(state)}", f"attempts: {row.get('attempts') or 0}"]
    if row.get("error"):
        lines.append(text(row["error"])[:300])
    return "<br>".join(lines)
