"""The run page: summary, Gantt chart of attempts, the DAG in layers, errors and task detail.

Built from one run's timeline (:func:`dagflow.analytics.timeline.run_timeline`); the cells and links
come from :mod:`dagflow.dashboard.layout`.
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from dagflow.dashboard.figures import LEGEND, STATE_COLORS, dag_graph_figure, gantt_figure
from dagflow.dashboard.layout import (
    CELL,
    ROW,
    TABLE,
    Row,
    keep,
    plain,
    run_href,
    seconds,
    short,
    status,
    table,
    when,
)


def legend() -> html.Div:
    """What each colour of the Gantt chart and the DAG means."""
    swatch = {"display": "inline-block", "width": "12px", "height": "12px",
              "borderRadius": "2px", "marginRight": "4px", "verticalAlign": "middle"}  # fmt: skip
    return html.Div(
        [
            html.Span(
                [html.Span(style={**swatch, "background": STATE_COLORS[state]}), meaning],
                title=state,
                style={"marginRight": "14px", "whiteSpace": "nowrap"},
            )
            for state, meaning in LEGEND.items()
        ],
        id="state-legend",
        style={**ROW, "fontSize": "13px", "color": "#444", "gap": "4px"},
    )


def run_page(
    timeline: Row | None, run_id: str, search: str = "", actions: list[Any] | None = None
) -> list[Any]:
    """The run page: summary and reason, the actions (Cancel, Retry) it is given, a legend,
    the Gantt chart of attempts, the DAG graph, a table of tasks (each a link that shows its
    attempts) and the task errors."""
    back = dcc.Link("← all runs", href="/" + search, id="back-link")
    if timeline is None:
        return [back, html.H2("Run not found"), html.P(f"No events for run {run_id}.")]
    run = timeline["run"]
    summary = (
        f"{run['dag_name']} · tenant {run['tenant']} · {run['status']} · "
        f"{seconds(run['duration'])} · {run['tasks_ok']} ok, {run['tasks_failed']} failed, "
        f"{run['tasks_skipped']} skipped, {run['retries']} retries"
    )
    if not timeline["attempts"] and run["status"] in ("running", "stale"):
        waiting = f"Waiting for a worker: no task has started since {when(run['start'])} UTC."
    else:
        waiting = "No task started."
    failures = [a for a in timeline["attempts"] if a.get("error")]
    task_rows = [
        {**task, "task_cell": dcc.Link(str(task["task_id"]),
                                       href=run_href(run_id, search, str(task["task_id"])))}
        for task in timeline["tasks"]
    ]  # fmt: skip
    children: list[Any] = [back, html.H2(f"Run {run_id}", id="run-title")]
    children.append(html.P(summary, id="run-summary"))
    if run.get("error"):
        children.append(html.P(f"Reason: {run['error']}", id="run-reason",
                               style={"color": STATE_COLORS["failed"]}))  # fmt: skip
    if not timeline["attempts"] and run["status"] in ("running", "stale"):
        children.append(html.P(waiting, id="run-waiting"))
    children += actions or []
    children += [
        legend(),
        dcc.Graph(
            id="gantt-chart",
            figure=gantt_figure(
                timeline["attempts"], timeline["tasks"], timeline.get("until"), waiting
            ),
        ),
        dcc.Graph(id="dag-graph", figure=dag_graph_figure(timeline["tasks"], timeline["edges"])),
        html.H3("Tasks"),
        html.P(
            "Click a task (here, on a bar or on a node) to see its attempts.",
            style={"color": "#666", "fontSize": "13px"},
        ),
        table(
            "run-tasks",
            [
                ("task_cell", "Task", keep),
                ("state", "State", status),
                ("attempts", "Attempts", plain),
                ("start", "Start (UTC)", when),
                ("error", "Last error", short),
            ],
            task_rows,
            "No task has started.",
        ),
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
    return children


def task_detail(timeline: Row | None, task_id: str | None) -> list[Any]:
    """One task's attempts: worker, lease fence, outcome, times, error and traceback."""
    if timeline is None or not task_id:
        return []
    tries = [a for a in timeline["attempts"] if a["task_id"] == task_id]
    task = next((t for t in timeline["tasks"] if t["task_id"] == task_id), None)
    header = html.H3(f"Task {task_id}", id="task-title")
    if task is None:
        return [header, html.P("This run has no such task.")]
    if not tries:
        why = f" ({task['error']})" if task.get("error") else ""
        return [header, html.P(f"{task['state']}: it never started{why}.", id="task-never")]
    rows = []
    for attempt in tries:
        cells: list[Any] = [
            plain(attempt["attempt"]), plain(attempt.get("worker")), plain(attempt.get("fence")),
            status(attempt["status"]), when(attempt.get("start")),
            seconds(attempt.get("duration_s")), plain(attempt.get("error")),
        ]  # fmt: skip
        rows.append(html.Tr([html.Td(cell, style=CELL) for cell in cells]))
        if attempt.get("traceback"):
            pre = html.Pre(
                str(attempt["traceback"]),
                className="traceback",
                style={"background": "#f5f5f5", "padding": "8px", "overflowX": "auto",
                       "fontSize": "12px", "margin": "0"},
            )  # fmt: skip
            rows.append(html.Tr(html.Td(pre, colSpan=7, style=CELL)))
    labels = ["Attempt", "Worker", "Lease", "Outcome", "Start (UTC)", "Duration", "Error"]
    head = html.Thead(html.Tr([html.Th(label, style=CELL) for label in labels]))
    return [header, html.Table([head, html.Tbody(rows)], id="task-attempts", style=TABLE)]
