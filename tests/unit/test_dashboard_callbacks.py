"""Dashboard callbacks called directly, figures, auth, the queue panel and Flower's config."""

from __future__ import annotations

import base64
import json
import runpy
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dash import dcc, html

from dagflow.analytics.timeline import run_timeline
from dagflow.cli import main
from dagflow.clock import isoformat
from dagflow.dashboard.app import create_app
from dagflow.dashboard.callbacks import (
    OVERVIEW_OUTPUTS,
    DashboardData,
    render_overview,
    render_route,
    run_id_of,
)
from dagflow.dashboard.figures import dag_graph_figure, gantt_figure
from dagflow.dashboard.jobs_panel import NO_JOBS, JobsView, summarize_jobs
from dagflow.scheduling.job import Job, JobStatus
from dagflow.settings import Settings
from dagflow.stores.queue_stats import NO_BROKER, QueueStats, redis_queue_stats

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def ev(kind: str, minutes_ago: float, run: str, tenant: str, **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": isoformat(NOW - timedelta(minutes=minutes_ago)),
        "event": kind,
        "run_id": run,
        "dag_name": "weekly_ops_chain",
        "tenant_id": tenant,
    } | fields


def write_log(path: Path, records: list[dict[str, Any]], junk: int = 0) -> Path:
    lines = [json.dumps(r) for r in records] + ["{torn"] * junk
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Two runs: r1 (acme) retried sweep then failed report; r2 (globex) succeeded."""
    events = [
        ev("dag_start", 50, "r1", "acme", tasks=2, edges=[["sweep", "report"]]),
        ev("task_start", 49, "r1", "acme", task_id="sweep", attempt=1),
        ev("task_retry", 48, "r1", "acme", task_id="sweep", attempt=1, error="E: slow"),
        ev("task_start", 47, "r1", "acme", task_id="sweep", attempt=2),
        ev("task_ok", 46, "r1", "acme", task_id="sweep", attempt=2, duration_s=1.0),
        ev("task_start", 45, "r1", "acme", task_id="report", attempt=1),
        ev("task_fail", 44, "r1", "acme", task_id="report", attempt=1, duration_s=3.0,
           error="RunnerError: <script>alert(1)</script>"),
        ev("dag_done", 44, "r1", "acme", status="failed", tasks=2, tasks_succeeded=1,
           tasks_failed=1, tasks_skipped=0, duration_s=360.0),
        ev("dag_start", 20, "r2", "globex", tasks=1),
        ev("task_start", 20, "r2", "globex", task_id="a", attempt=1),
        ev("task_ok", 19, "r2", "globex", task_id="a", attempt=1, duration_s=2.0),
        ev("dag_done", 19, "r2", "globex", status="success", tasks=1, tasks_succeeded=1,
           tasks_failed=0, tasks_skipped=0, duration_s=60.0),
    ]  # fmt: skip
    states = [
        {"timestamp": isoformat(NOW), "event": "schedule_enqueued", "schedule_id": "nightly",
         "tenant_id": "globex", "dag": "dags/a.yaml", "run_id": "r2"},
        {"timestamp": isoformat(NOW), "event": "run_finished", "schedule_id": "nightly",
         "tenant_id": "globex", "run_id": "r2", "status": "success", "duration_s": 60.0},
    ]  # fmt: skip
    return Settings(
        events_path=write_log(tmp_path / "events.jsonl", events, junk=2),
        state_path=write_log(tmp_path / "state.jsonl", states),
    )


@pytest.fixture
def data(settings: Settings) -> DashboardData:
    return DashboardData.from_settings(settings, clock=lambda: NOW)


def texts(component: Any) -> list[str]:
    """Every string inside a component tree, in order."""
    if isinstance(component, str):
        return [component]
    if isinstance(component, list | tuple):
        return [t for child in component for t in texts(child)]
    children = getattr(component, "children", None)
    return texts(children) if children is not None else []


def find(component: Any, component_id: str) -> Any:
    """The component with ``id`` in a tree, or None."""
    if getattr(component, "id", None) == component_id:
        return component
    children = component if isinstance(component, list | tuple) else None
    if children is None:
        children = getattr(component, "children", None)
        children = children if isinstance(children, list | tuple) else [children]
    for child in children:
        if child is not None and not isinstance(child, str):
            found = find(child, component_id)
            if found is not None:
                return found
    return None


def test_overview_kpis_tables_and_status(data: DashboardData) -> None:
    overview = render_overview(data, tenant=None)

    kpis = {card.id: texts(card)[-1] for card in overview.kpis}
    assert kpis == {
        "kpi-ok": "2",
        "kpi-failed": "1",
        "kpi-duration": "2.00 s",
        "kpi-error-rate": "33.3%",
    }
    assert [r["run_id"] for r in overview.runs] == ["r2", "r1"]
    rows = overview.runs_panel.children.children[1].children
    assert len(rows) == 2
    link = rows[1].children[0].children
    assert isinstance(link, dcc.Link)
    assert link.href == "/runs/r1"
    assert "nightly" in texts(overview.schedules_panel)
    assert texts(overview.tenants_panel)[5:7] == ["acme", "1"]
    assert overview.tenant_options == [
        {"label": "acme", "value": "acme"},
        {"label": "globex", "value": "globex"},
    ]
    assert "2 corrupt lines skipped" in overview.read_status
    assert [trace.name for trace in overview.runs_figure.data] == ["success", "failed"]
    assert len(overview.outputs()) == len(OVERVIEW_OUTPUTS)


def test_overview_tenant_filter(data: DashboardData) -> None:
    overview = render_overview(data, tenant="globex")

    assert [r["run_id"] for r in overview.runs] == ["r2"]
    assert texts(overview.kpis[1])[-1] == "0"
    assert "nightly" in texts(overview.schedules_panel)
    assert render_overview(data, "acme").schedules_panel.children.children == (
        "No schedules have run."
    )


def test_queue_panel_without_broker_says_so(data: DashboardData) -> None:
    panel = render_overview(data, None).queue_panel

    assert texts(panel)[0] == NO_BROKER
    assert find(panel, "queue-running") is not None
    # Jobs live in Redis: without it the panel says where they would be
    # once: in the empty jobs table, not again in a note above it (issue 21)
    assert texts(find(panel, "queue-jobs")) == [NO_JOBS]
    assert texts(panel).count(NO_JOBS) == 1


def job(n: int, status: JobStatus, tenant: str = "acme", runs: tuple[str, ...] = ()) -> Job:
    return Job(
        id=f"job{n}",
        dag_path="dags/a.yaml",
        tenant_id=tenant,
        schedule_id="nightly",
        status=status,
        enqueued_at=NOW.timestamp() - n,
        run_id=runs[-1] if runs else f"r{n}",
        runs=runs,
    )


def test_queue_panel_counts_jobs_by_status_and_links_the_last_run(data: DashboardData) -> None:
    # Given jobs in every status, read for the chosen tenant
    asked: list[str | None] = []
    newest = [
        job(1, JobStatus.RETRY, runs=("r1",)),
        job(2, JobStatus.SUCCESS, runs=("r2a", "job2-2")),
        job(3, JobStatus.PENDING),
        job(4, JobStatus.PENDING),
        job(5, JobStatus.FAILED, runs=("r5",)),
    ]

    def probe(_settings: Settings, tenant: str | None) -> JobsView:
        asked.append(tenant)
        return summarize_jobs(newest, recent=3)

    data.jobs_probe = probe

    panel = render_overview(data, "acme").queue_panel

    # Then the tenant filter reached the job store
    assert asked == ["acme"]
    counts = {s: texts(find(panel, f"jobs-{s}"))[1] for s in
              ("pending", "running", "success", "failed", "retry")}  # fmt: skip
    assert counts == {"pending": "2", "running": "0", "success": "1", "failed": "1", "retry": "1"}
    # And the table shows the newest jobs, each last run linked with the tenant kept
    table = find(panel, "queue-jobs")
    rows = table.children.children[1].children
    assert [texts(tr)[0] for tr in rows] == ["job1", "job2", "job3"]
    assert texts(rows[1])[3:5] == ["SUCCESS", "2"]
    hrefs = [getattr(cell.children, "href", None) for tr in rows for cell in tr.children]
    assert "/runs/job2-2?tenant=acme" in hrefs and "/runs/r1?tenant=acme" in hrefs
    assert texts(rows[2])[5] == "—"  # a PENDING job has no run yet


def test_queue_panel_shows_job_store_errors(data: DashboardData) -> None:
    data.jobs_probe = lambda _settings, _tenant: JobsView(error="Redis error: down")

    panel = render_overview(data, None).queue_panel

    assert find(panel, "jobs-error").children == "Redis error: down"


def test_queue_panel_shows_redis_errors_as_text(data: DashboardData) -> None:
    data.queue_probe = lambda _settings: QueueStats(error="Redis error: down")

    panel = render_overview(data, None).queue_panel

    assert find(panel, "queue-error").children == "Redis error: down"


def test_queue_panel_with_counts(data: DashboardData) -> None:
    stats = QueueStats(queues={"celery": 3, "high": 1}, results={"SUCCESS": 5}, truncated=True)
    data.queue_probe = lambda _settings: stats

    panel = render_overview(data, None).queue_panel

    assert texts(find(panel, "queue-pending"))[1] == "4"
    assert texts(find(panel, "queue-results-success"))[1] == "5"
    assert any("partial" in t for t in texts(panel))


def test_queue_panel_shows_the_collectors_lag(data: DashboardData) -> None:
    # Given events through the stream with a RabbitMQ broker (no Redis queue counts)
    stats = QueueStats(error=NO_BROKER, collector_behind=12, collector_lag_s=1.5)
    data.queue_probe = lambda _settings: stats

    panel = render_overview(data, None).queue_panel

    assert texts(panel)[0] == NO_BROKER
    assert texts(find(panel, "queue-collector-lag"))[1] == "12 events, 1.5 s"
    assert find(panel, "queue-pending") is None


def test_queue_panel_counts_runs_waiting_for_a_slot_per_tenant(data: DashboardData) -> None:
    stats = QueueStats(queues={"celery": 0}, waiting={"acme": 3, "beta": 2})
    data.queue_probe = lambda _settings: stats

    everyone = render_overview(data, None).queue_panel
    acme = render_overview(data, "acme").queue_panel

    assert texts(find(everyone, "queue-waiting"))[1] == "5"
    assert texts(find(acme, "queue-waiting"))[1] == "3"


def test_route_shows_overview_or_run_page(data: DashboardData) -> None:
    shown, hidden, children = render_route(data, "/") or ((), (), ())
    assert (shown["display"], hidden["display"], children) == ("block", "none", [])

    result = render_route(data, "/runs/r1")

    assert result is not None
    overview_style, run_style, page = result
    assert (overview_style["display"], run_style["display"]) == ("none", "block")
    gantt = find(page, "gantt-chart").figure
    assert {trace.name for trace in gantt.data} == {"ok", "retry", "failed"}
    assert sum(len(trace.y) for trace in gantt.data) == 3  # sweep twice (a retry), report once
    graph = find(page, "dag-graph").figure
    assert list(graph.data[0].text) == ["sweep", "report"]
    assert len(graph.layout.annotations) == 1  # the sweep -> report edge
    errors = texts(find(page, "run-errors"))
    assert "RunnerError: <script>alert(1)</script>" in errors  # a string child: shown as text


def test_route_unknown_run_and_refresh_of_finished_run(data: DashboardData) -> None:
    result = render_route(data, "/runs/nope")
    assert result is not None
    assert "Run not found" in texts(result[2])
    assert render_route(data, "/runs/r1", refreshing=True) is None
    assert run_id_of("/runs/a%2Fb") == "a/b"
    assert run_id_of("/runs/") is None


def test_figures_escape_event_text() -> None:
    tasks = [{"task_id": "<b>x</b>", "state": "failed", "attempts": 2, "error": "<i>e</i>"}]

    graph = dag_graph_figure(tasks, [])

    assert graph.data[0].text == ("&lt;b&gt;x&lt;/b&gt;",)
    assert "&lt;i&gt;e&lt;/i&gt;" in graph.data[0].hovertext[0]


@pytest.mark.timeout(10)
def test_dag_graph_layers_by_edges_and_adds_pending_nodes() -> None:
    tasks = [{"task_id": "a", "state": "success"}, {"task_id": "b", "state": "running"}]

    graph = dag_graph_figure(tasks, [("a", "b"), ("a", "c"), ("b", "d")])

    xs = dict(zip(graph.data[0].text, graph.data[0].x, strict=True))
    assert xs == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert dag_graph_figure([], [("a", "b"), ("b", "a")]) is not None  # a cycle: no hang


def test_gantt_draws_running_attempt_to_the_horizon() -> None:
    events = [
        ev("task_start", 10, "r", "t", task_id="a", attempt=1),
        ev("task_ok", 9, "r", "t", task_id="a", attempt=1, duration_s=60.0),
        ev("task_start", 9, "r", "t", task_id="b", attempt=1),
        ev("task_ok", 5, "r", "t", task_id="c", attempt=1, duration_s=30.0),
    ]
    timeline = run_timeline(events, "r")
    assert timeline is not None

    figure = gantt_figure(timeline["attempts"])

    running = next(t for t in figure.data if t.name == "running")
    assert running.x[0] == pytest.approx(4 * 60 * 1000)  # b's bar runs to c's end


def test_app_layout_and_basic_auth(settings: Settings) -> None:
    app = create_app(
        Settings(**{**settings.__dict__, "dashboard_auth": "ops:s3:cret"}), clock=lambda: NOW
    )
    client = app.server.test_client()

    assert client.get("/").status_code == 401
    token = base64.b64encode(b"ops:s3:cret").decode()
    response = client.get("/_dash-layout", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200
    assert "kpi-cards" in response.get_data(as_text=True)
    wrong = base64.b64encode(b"ops:nope").decode()
    assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert isinstance(app.layout, html.Div)


def test_dashboard_command_reports_bad_auth_in_one_line_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGFLOW_DASHBOARD_AUTH", "no-colon")

    assert main(["dashboard", "--port", "1"]) == 3
    assert capsys.readouterr().err.startswith("ConfigError: ")


def test_queue_stats_unreachable_redis_is_a_message() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket is closed

    stats = redis_queue_stats(f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1")

    assert stats.error is not None
    assert stats.error.startswith("Redis error: ")


def test_flowerconfig_binds_localhost_and_reads_basic_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.delenv("FLOWER_ADDRESS", raising=False)
    config = runpy.run_path(str(ROOT / "flowerconfig.py"))
    assert config["address"] == "127.0.0.1"
    assert "basic_auth" not in config

    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:pw,admin:x")
    config = runpy.run_path(str(ROOT / "flowerconfig.py"))
    assert config["basic_auth"] == ["ops:pw", "admin:x"]


def test_dashboard_command_help_shows_the_apps_defaults() -> None:
    # The CLI states them without importing Dash; they must not drift from the app's.
    from dagflow.cli import dashboard as command
    from dagflow.dashboard.app import DEFAULT_REFRESH_S
    from dagflow.dashboard.callbacks import DEFAULT_MAX_EVENTS

    assert f"{DEFAULT_MAX_EVENTS:,}" == command.MAX_EVENTS_HELP
    assert float(command.REFRESH_HELP) == DEFAULT_REFRESH_S


def test_run_page_shows_where_each_delivery_ran_and_which_lost_its_lease() -> None:
    # Given attempt 1 of a task started on worker a (fence 1), taken over by b (fence 2),
    # and a's late result refused
    events = [
        ev("dag_start", 5, "r9", "acme", dag_name="d", tasks=1),
        ev(
            "task_start",
            4,
            "r9",
            "acme",
            dag_name="d",
            task_id="t",
            attempt=1,
            worker="a@h1",
            fence=1,
        ),
        ev(
            "task_start",
            3,
            "r9",
            "acme",
            dag_name="d",
            task_id="t",
            attempt=1,
            worker="b@h2",
            fence=2,
        ),
        ev(
            "task_ok",
            2,
            "r9",
            "acme",
            dag_name="d",
            task_id="t",
            attempt=1,
            worker="b@h2",
            fence=2,
            duration_s=60.0,
        ),
        ev(
            "task_lease_lost",
            1,
            "r9",
            "acme",
            dag_name="d",
            task_id="t",
            attempt=1,
            worker="a@h1",
            fence=1,
            error="lease lost: ...",
        ),
        ev("dag_done", 1, "r9", "acme", dag_name="d", status="success", tasks=1),
    ]
    timeline = run_timeline(events, "r9")
    assert timeline is not None
    # Then each delivery is its own attempt, with its worker and lease, and the task is ok
    tries = [(a["worker"], a["fence"], a["status"]) for a in timeline["attempts"]]
    assert tries == [("a@h1", 1, "lease lost"), ("b@h2", 2, "ok")]
    assert [t["state"] for t in timeline["tasks"]] == ["success"]


def operator_log() -> list[dict[str, Any]]:
    """A failed run with retries, a traceback, a lease lost, skips and ms tasks; a stalled
    run; a run waiting for a worker; a stale run; a cancelled run."""
    tb = 'Traceback (most recent call last):\n  File "wf.py", line 3, in run\nValueError: bad'
    return [
        ev("dag_start", 30, "f", "acme", tasks=4,
           edges=[["a", "c"], ["b", "c"], ["a", "d"], ["c", "e"], ["d", "e"]]),
        ev("task_start", 30, "f", "acme", task_id="a", attempt=1, worker="w1", fence=1),
        ev("task_ok", 30 - 1e-5, "f", "acme", task_id="a", attempt=1, fence=1, duration_s=0.0006),
        ev("task_start", 29, "f", "acme", task_id="b", attempt=1, worker="w2", fence=1),
        ev("task_start", 28, "f", "acme", task_id="b", attempt=1, worker="w3", fence=2),
        ev("task_ok", 27, "f", "acme", task_id="b", attempt=1, worker="w3", fence=2),
        ev("task_lease_lost", 26, "f", "acme", task_id="b", attempt=1, worker="w2", fence=1,
           error="lease lost"),
        ev("task_start", 25, "f", "acme", task_id="c", attempt=1, worker="w1", fence=1),
        ev("task_retry", 24, "f", "acme", task_id="c", attempt=1, worker="w1", fence=1,
           error="ValueError: first", traceback=tb),
        ev("task_start", 23, "f", "acme", task_id="c", attempt=2, worker="w1", fence=2),
        ev("task_fail", 22, "f", "acme", task_id="c", attempt=2, worker="w1", fence=2,
           error="ValueError: bad", traceback=tb),
        ev("task_skip", 22, "f", "acme", task_id="e", error="upstream task c failed"),
        ev("task_start", 22, "f", "acme", task_id="d", attempt=1),
        ev("task_ok", 22, "f", "acme", task_id="d", attempt=1, duration_s=0.001),
        ev("dag_done", 22, "f", "acme", status="failed"),
        ev("dag_start", 20, "s", "globex"),
        ev("dag_done", 18, "s", "globex", status="failed", error="stalled: tasks x can never start"),
        ev("dag_start", 1, "w", "globex", tasks=2, edges=[["x", "y"]]),
        ev("dag_start", 100, "old", "acme"),
        ev("dag_start", 10, "c", "acme"),
        ev("task_start", 10, "c", "acme", task_id="x", attempt=1),
        ev("task_cancel", 9, "c", "acme", task_id="x", attempt=1, error="cancelled: ops"),
        ev("task_cancel", 9, "c", "acme", task_id="y", error="cancelled: ops"),
        ev("dag_done", 9, "c", "acme", status="cancelled"),
    ]  # fmt: skip


@pytest.fixture
def ops(tmp_path: Path) -> DashboardData:
    settings = Settings(
        events_path=write_log(tmp_path / "events.jsonl", operator_log()),
        state_path=tmp_path / "state.jsonl",
    )
    return DashboardData.from_settings(settings, clock=lambda: NOW)


def test_running_counts_only_runs_with_a_recent_event_and_stalled_runs_show_why(
    ops: DashboardData,
) -> None:
    overview = render_overview(ops, None)

    panel = overview.queue_panel
    assert texts(find(panel, "queue-running"))[1] == "1"  # only "w": "old" is stale
    assert texts(find(panel, "queue-stale"))[1] == "1"
    assert texts(find(panel, "queue-failed"))[1] == "2"
    runs = texts(overview.runs_panel)
    assert "stalled: tasks x can never start" in runs
    assert "c: ValueError: bad" in runs


def test_every_failed_row_links_to_its_run_page_keeping_the_tenant(ops: DashboardData) -> None:
    overview = render_overview(ops, "acme")

    links = [cell for row in overview.runs for cell in [row]]
    assert {r["run_id"] for r in links} == {"f", "old", "c"}  # the filter applies
    status = find(overview.runs_panel, "runs-table").children.children[1].children
    failed = [tr.children[3].children for tr in status if "failed" in texts(tr.children[3])]
    assert [(link.href, link.children) for link in failed] == [("/runs/f?tenant=acme", "failed")]
    assert find(overview.queue_panel, "queue-running") is not None


def test_tenant_filter_lives_in_the_url() -> None:
    from dagflow.dashboard.callbacks import sync_tenant, tenant_of, with_query

    assert tenant_of("?tenant=acme&task=x") == "acme"
    assert tenant_of("") is None
    assert with_query("?task=x", tenant="acme") == "?task=x&tenant=acme"
    assert with_query("?tenant=acme", tenant=None) == ""
    data = DashboardData.from_settings(Settings(events_path=Path("/nonexistent")))
    # The address wins on load; the dropdown gets the tenant and it among its options
    _, value, options = sync_tenant(data, "url", "?tenant=acme", None)
    assert (value, options) == ("acme", [{"label": "acme", "value": "acme"}])
    # The dropdown wins when the user picks
    assert sync_tenant(data, "tenant-filter", "", "globex")[0] == "?tenant=globex"


def test_empty_or_missing_log_says_so_without_axes(tmp_path: Path) -> None:
    missing = Settings(events_path=tmp_path / "none.jsonl", state_path=tmp_path / "s.jsonl")
    empty = Settings(events_path=write_log(tmp_path / "e.jsonl", []), state_path=tmp_path / "s")

    for settings, words in ((missing, "No event log"), (empty, "is empty")):
        overview = render_overview(DashboardData.from_settings(settings, clock=lambda: NOW), None)
        assert words in overview.log_note
        for figure in (overview.runs_figure, overview.errors_figure):
            assert figure.data == ()
            assert words in figure.layout.annotations[0].text
            assert figure.layout.xaxis.visible is False


def test_kpi_icons_are_plain_text_not_emoji(data: DashboardData) -> None:
    labels = "".join(t for card in render_overview(data, None).kpis for t in texts(card))

    assert labels.isascii()


def test_gantt_bars_have_a_visible_width_and_every_state_shows() -> None:
    timeline = run_timeline(operator_log(), "f", now=NOW)
    assert timeline is not None

    figure = gantt_figure(timeline["attempts"], timeline["tasks"], timeline["until"])

    span_ms = 8 * 60 * 1000
    bars = {t.name: t for t in figure.data}
    assert set(bars) == {"ok", "retry", "failed", "lease lost", "skipped"}
    assert min(w for t in figure.data for w in t.x) >= 0.005 * span_ms  # a 0.6 ms task shows
    assert list(bars["retry"].customdata) == ["c"]
    assert list(bars["skipped"].y) == ["e"]


def test_running_attempt_extends_to_now_and_waiting_run_says_so() -> None:
    events = [ev("dag_start", 5, "r", "t"), ev("task_start", 4, "r", "t", task_id="a", attempt=1)]
    timeline = run_timeline(events, "r", now=NOW)
    assert timeline is not None

    figure = gantt_figure(timeline["attempts"], timeline["tasks"], timeline["until"])
    assert figure.data[0].x[0] == pytest.approx(4 * 60 * 1000)  # to now, not to its start

    waiting = run_timeline(operator_log(), "w", now=NOW)
    assert waiting is not None
    empty = gantt_figure(waiting["attempts"], waiting["tasks"], waiting["until"], "Waiting")
    assert empty.data == () and empty.layout.annotations[0].text == "Waiting"


def test_run_page_of_a_waiting_run_and_a_cancelled_run(ops: DashboardData) -> None:
    page = (render_route(ops, "/runs/w") or ((), (), ()))[2]
    assert "Waiting for a worker" in texts(find(page, "run-waiting"))[0]
    assert "2000" not in str(find(page, "gantt-chart").figure.layout.xaxis)

    cancelled = run_timeline(operator_log(), "c", now=NOW)
    assert cancelled is not None
    assert cancelled["run"]["status"] == "cancelled"
    assert {t["task_id"]: t["state"] for t in cancelled["tasks"]} == {
        "x": "cancelled",
        "y": "cancelled",
    }


def test_run_page_has_a_legend_with_lease_lost_and_the_reason(ops: DashboardData) -> None:
    page = (render_route(ops, "/runs/s") or ((), (), ()))[2]

    assert "worker lost its lease; another took over" in texts(find(page, "state-legend"))
    assert texts(find(page, "run-reason")) == ["Reason: stalled: tasks x can never start"]


def test_task_detail_shows_attempts_worker_fence_error_and_traceback(ops: DashboardData) -> None:
    from dagflow.dashboard.callbacks import clicked_task, render_task_detail

    # Without a choice, a failed run's page shows its failed task
    detail = render_task_detail(ops, "/runs/f", "")
    shown = texts(detail)
    assert shown[0] == "Task c"
    assert "ValueError: bad" in shown and "w1" in shown and "2" in shown
    assert any(t.startswith("Traceback (most recent call last)") for t in shown)
    # A click on a bar or a node selects a task
    assert clicked_task(None, {"points": [{"customdata": "b"}]}) == "b"
    detail = texts(render_task_detail(ops, "/runs/f", "?task=b"))
    assert detail[:4] == ["Task b", "Attempt", "Worker", "Lease"]
    assert detail[8:12] == ["1", "w2", "1", "lease lost"]  # attempt, worker, fence, outcome
    assert "skipped: it never started (upstream task c failed)." in texts(
        render_task_detail(ops, "/runs/f", "?task=e")
    )


def test_dag_is_layered_left_to_right_with_no_needless_crossings() -> None:
    from dagflow.dashboard.dag_layout import crossings, layered_positions

    # Given parents ordered so that naive placement crosses: a->y, b->x
    edges = [("a", "y"), ("b", "x"), ("x", "z"), ("y", "z")]
    positions = layered_positions(["a", "b", "x", "y", "z"], edges)

    assert {n: p[0] for n, p in positions.items()} == {"a": 0, "b": 0, "x": 1, "y": 1, "z": 2}
    layers = [
        sorted((n for n in positions if positions[n][0] == x), key=lambda n: -positions[n][1])
        for x in range(3)
    ]
    assert crossings(layers, edges) == 0
    assert crossings([["a", "b"], ["x", "y"]], edges) == 1
