"""The pure part of the exporter: events to metric updates, and updates to metric families."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dagflow.errors import ConfigError
from dagflow.metrics import catalog as c
from dagflow.metrics.exporter import families
from dagflow.metrics.mapping import Buckets, Update, field, parse_field, updates
from dagflow.settings import Settings
from dagflow.stores.metrics import Gauges

BASE = {"timestamp": "2026-12-01T10:00:00Z", "run_id": "r1", "dag_name": "d", "tenant_id": "t"}


def ev(name: str, **fields: Any) -> dict[str, Any]:
    return {**BASE, "event": name, **fields}


def counted(log: str, record: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {parse_field(u.field): u.amount for u in updates(log, record) if u.op == "c"}


@pytest.mark.parametrize(
    ("record", "series"),
    [
        (ev("dag_start"), ("dagflow_runs_started_total", ("d", "t"))),
        (ev("dag_done", status="failed"), ("dagflow_runs_finished_total", ("d", "t", "failed"))),
        (ev("task_ok", task_id="a"), ("dagflow_task_attempts_total", ("d", "a", "ok"))),
        (ev("task_fail", task_id="a"), ("dagflow_task_attempts_total", ("d", "a", "failed"))),
        (ev("task_retry", task_id="a"), ("dagflow_task_attempts_total", ("d", "a", "retry"))),
        (
            ev("task_lease_lost", task_id="a"),
            ("dagflow_task_attempts_total", ("d", "a", "lease_lost")),
        ),
        (ev("task_cancel", task_id="a"), ("dagflow_task_attempts_total", ("d", "a", "cancelled"))),
        (ev("task_skip", task_id="a"), ("dagflow_tasks_skipped_total", ("d", "a"))),
        (
            ev("task_ok", task_id="process[3]"),
            ("dagflow_task_attempts_total", ("d", "process", "ok")),
        ),
        (ev("task_skip", task_id="p[12]"), ("dagflow_tasks_skipped_total", ("d", "p"))),
        (ev("dag_deadline_missed"), ("dagflow_deadlines_missed_total", ("d",))),
        (
            ev("notification_sent", kind="webhook"),
            ("dagflow_notifications_total", ("webhook", "sent")),
        ),
        (
            ev("notification_failed", kind="webhook"),
            ("dagflow_notifications_total", ("webhook", "failed")),
        ),
        (
            ev("hook_failed", kind="on_failure"),
            ("dagflow_notifications_total", ("on_failure", "failed")),
        ),
        (ev("hook_failed"), ("dagflow_notifications_total", ("hook", "failed"))),
    ],
)
def test_each_run_event_counts_once_in_its_series(
    record: dict[str, Any], series: tuple[str, tuple[str, ...]]
) -> None:
    assert counted("events", record) == {series: 1}


@pytest.mark.parametrize("name", ["task_reused", "task_start", "something_new"])
def test_events_that_count_nothing(name: str) -> None:
    assert counted("events", ev(name, task_id="a")) == {}


def test_a_task_id_with_brackets_inside_is_kept() -> None:
    assert c.task_label("a[1]b") == "a[1]b" and c.task_label("a[x]") == "a[x]"
    assert c.task_label("load[0]") == "load"


def test_durations_go_to_one_bucket_with_sum_and_count() -> None:
    ups = updates("events", ev("task_ok", task_id="a", duration_s=0.3))
    fields = {parse_field(u.field): (u.op, u.amount) for u in ups}
    assert fields == {
        ("dagflow_task_attempts_total", ("d", "a", "ok")): ("c", 1),
        ("dagflow_task_duration_seconds_bucket", ("0.5", "d", "a")): ("c", 1),
        ("dagflow_task_duration_seconds_sum", ("d", "a")): ("f", 0.3),
        ("dagflow_task_duration_seconds_count", ("d", "a")): ("c", 1),
    }


@pytest.mark.parametrize(
    ("seconds", "le"),
    [(0.0, "1.0"), (1.0, "1.0"), (1.01, "5.0"), (86400, "86400.0"), (90000, "+Inf")],
)
def test_run_durations_reach_a_day_then_inf(seconds: float, le: str) -> None:
    ups = updates("events", ev("dag_done", status="success", duration_s=seconds))
    buckets = [
        parse_field(u.field)[1]
        for u in ups
        if u.field.startswith('["dagflow_run_duration_seconds_bucket"')
    ]
    assert buckets == [(le, "d", "success")]


def test_custom_buckets_are_used() -> None:
    ups = updates(
        "events", ev("dag_done", status="success", duration_s=7200), Buckets(run=(60.0, 100_000.0))
    )
    assert ("100000.0", "d", "success") in [parse_field(u.field)[1] for u in ups]


def test_queue_wait_needs_queue_and_queued_s() -> None:
    assert updates("events", ev("task_start", task_id="a", queue="celery")) == []
    ups = updates("events", ev("task_start", task_id="a", queue="gpu", queued_s=0.02))
    assert parse_field(ups[0].field) == (
        "dagflow_task_queue_wait_seconds_bucket",
        ("0.025", "d", "gpu"),
    )


def test_sweep_state_lines_count_each_action() -> None:
    line = {"event": "sweep", "actions": {"expired": 2, "resent": 3, "bogus": 9}}
    assert counted("state", line) == {
        ("dagflow_sweeper_actions_total", ("expired",)): 2,
        ("dagflow_sweeper_actions_total", ("resent",)): 3,
    }


def test_a_successful_scheduled_run_sets_its_schedules_last_success() -> None:
    line = {
        "timestamp": "2026-12-01T10:00:00Z",
        "event": "run_finished",
        "schedule_id": "s",
        "status": "success",
    }
    assert updates("state", line) == [
        Update("m", field("dagflow_schedule_last_success_timestamp_seconds", "s"), 1796119200.0)
    ]
    assert updates("state", {**line, "status": "failed"}) == []
    assert updates("state", {"event": "schedule_enqueued", "schedule_id": "s"}) == []


def test_label_values_with_any_text_round_trip() -> None:
    raw = field("m", 'a"b', "c\td", "é")
    assert parse_field(raw) == ("m", ('a"b', "c\td", "é"))


def test_no_metric_has_an_id_or_fence_label() -> None:
    banned = {"run", "run_id", "job", "job_id", "fence", "id"}
    assert not [m.name for m in c.METRICS if banned & set(m.labels)]
    assert all(m.name.startswith("dagflow_") for m in c.METRICS)
    assert all(m.name.endswith("_total") for m in c.METRICS if m.kind == "counter")


@pytest.mark.parametrize(
    ("scope", "labels"),
    [
        ("scheduled", ("global", "scheduled")),
        ("tenant:acme", ("tenant", "acme")),
        ("dag:d", ("dag", "d")),
        ("pool:warehouse", ("pool", "warehouse")),
    ],
)
def test_slot_scopes_to_kind_and_name(scope: str, labels: tuple[str, str]) -> None:
    assert c.slot_labels(scope) == labels


def test_a_new_slot_kind_is_one_function() -> None:
    kinds = (*c.SLOT_KINDS, c.prefixed("gpu"))
    assert c.slot_labels("gpu:a100", kinds) == ("gpu", "a100")


def scrape(
    values: dict[str, float], gauges: Gauges
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    class Fixed:
        def collect(self) -> Any:
            return families(values, gauges, Buckets(), "1.2.3")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_families_serve_cumulative_histograms_and_every_gauge() -> None:
    values: dict[str, float] = {}
    for seconds in (0.3, 0.3, 4.0, 99999.0):
        for u in updates("events", ev("task_ok", task_id="a", duration_s=seconds)):
            values[u.field] = values.get(u.field, 0) + u.amount
    gauges = Gauges(
        runs_active={"t": 2},
        runs_pending={("t", "tenant:t"): 3, ("t", "queued"): 1},
        slots_in_use={"tenant:t": 2, "scheduled": 1},
        slots_limit={"tenant:t": 2},
        jobs={"RETRY": 4},
        stream_length=10,
        collector_lag_s=1.5,
    )
    got = scrape(values, gauges)

    def at(metric: str, /, **labels: str) -> float:
        return got[(metric, tuple(sorted(labels.items())))]

    bucket = "dagflow_task_duration_seconds_bucket"
    assert [at(bucket, dag="d", task="a", le=le) for le in ("0.25", "0.5", "5.0", "+Inf")] == [
        0,
        2,
        3,
        4,
    ]
    assert at("dagflow_task_duration_seconds_count", dag="d", task="a") == 4
    assert at("dagflow_task_attempts_total", dag="d", task="a", outcome="ok") == 4
    assert at("dagflow_runs_active", tenant="t") == 2
    assert at("dagflow_runs_pending", tenant="t", reason="tenant") == 3
    assert at("dagflow_runs_pending", tenant="t", reason="queued") == 1
    assert at("dagflow_slots_in_use", kind="global", name="scheduled") == 1
    assert at("dagflow_slots_limit", kind="tenant", name="t") == 2
    assert at("dagflow_jobs", status="RETRY") == 4
    assert at("dagflow_event_stream_length") == 10
    assert at("dagflow_collector_lag_seconds") == 1.5
    assert at("dagflow_build_info", version="1.2.3") == 1


def test_bucket_settings_are_parsed_and_checked() -> None:
    settings = Settings.from_env({"DAGFLOW_METRICS_RUN_BUCKETS": "60, 3600,86400"})
    assert settings.metrics_run_buckets == (60.0, 3600.0, 86400.0)
    assert Settings.from_env({}).metrics_run_buckets[-1] == 86400
    for bad in ("1,x", "10,5", "0,5", "5,5"):
        with pytest.raises(ConfigError, match="DAGFLOW_METRICS_RUN_BUCKETS"):
            Settings.from_env({"DAGFLOW_METRICS_RUN_BUCKETS": bad})
