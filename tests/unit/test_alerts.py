"""Alerts (pure): the fields of a DAG file and a schedule entry, their errors, what each
run end tells, deadlines and the webhook's body."""

from __future__ import annotations

from typing import Any

import pytest

from dagflow.dag.alerts import Alerts, Webhook, alert_lines
from dagflow.dag.load import check_dag
from dagflow.dag.plan import RunPlan
from dagflow.dag.spec import parse_dag
from dagflow.errors import SpecError
from dagflow.execution.deadlines import deadline_fields
from dagflow.execution.notify import backoff_s, end_notices, trigger_of, webhook_body
from dagflow.scheduling.schedules import parse_schedules, unknown_schedule_hooks

KNOWN = ["page_owner", "wf"]


def dag_lines(**fields: Any) -> list[str]:
    """The error lines of a one-task DAG with ``fields`` added (none if it is valid)."""
    data = {"name": "n", "tenant_id": "t", "tasks": [{"id": "a", "workflow_ref": "wf"}]}
    try:
        check_dag(parse_dag({**data, **fields}, source="d.yaml"), "d.yaml", KNOWN)
    except SpecError as exc:
        return exc.lines()
    return []


def test_the_issue_example_is_valid() -> None:
    assert (
        dag_lines(
            deadline_s=3600,
            on_failure=["page_owner"],
            on_success=[],
            on_deadline_missed=["page_owner"],
            notify=[{"webhook_env": "SLACK_WEBHOOK_URL", "events": ["failed", "deadline_missed"]}],
        )
        == []
    )


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            {"deadline_s": "1h"},
            "d.yaml, field 'deadline_s': DagValidationError: expected a number of seconds "
            "greater than 0, got the string '1h'",
        ),
        (
            {"deadline_s": 0},
            "d.yaml, field 'deadline_s': DagValidationError: expected a number of seconds "
            "greater than 0, got the number 0",
        ),
        (
            {"on_failure": "page_owner"},
            "d.yaml, field 'on_failure': DagValidationError: expected a list of registered "
            "workflow names, got the string 'page_owner' (write [page_owner])",
        ),
        (
            {"on_success": ["nope"]},
            "d.yaml, field 'on_success': DagValidationError: unknown workflow 'nope': "
            "hooks are registered workflows (known: page_owner, wf)",
        ),
        (
            {"on_deadline_missed": ["page_ownr"]},
            "d.yaml, field 'on_deadline_missed': DagValidationError: unknown workflow "
            "'page_ownr' (did you mean 'page_owner'?): hooks are registered workflows "
            "(known: page_owner, wf)",
        ),
        (
            {"notify": [{"webhook_env": "https://hooks.slack.com/services/T0/B0/x"}]},
            "d.yaml, field 'notify.0.webhook_env': DagValidationError: expected the name of an "
            "environment variable holding the URL, not the URL itself (the URL is a secret: "
            "keep it out of the YAML)",
        ),
        (
            {"notify": [{"webhook_env": "SLACK", "events": ["failure"]}]},
            "d.yaml, field 'notify.0.events': DagValidationError: unknown event 'failure' "
            "(did you mean 'failed'?); expected failed, success, deadline_missed",
        ),
        (
            {"notify": [{"webhook_env": "SLACK", "on": ["failed"]}]},
            "d.yaml, field 'notify.0': DagValidationError: unknown key 'on' (YAML reads a bare "
            "on: as true): write events: [failed, ...]",
        ),
        (
            {"notify": {"webhook_env": "SLACK"}},
            "d.yaml, field 'notify': DagValidationError: expected a list of notifiers such as "
            "{webhook_env: SLACK_WEBHOOK_URL, events: [failed]}, got a mapping",
        ),
        (
            {"notify": [{"events": ["failed"]}]},
            "d.yaml, field 'notify.0.webhook_env': DagValidationError: required field is missing",
        ),
    ],
)
def test_each_bad_field_is_one_line_naming_file_and_field(
    fields: dict[str, Any], line: str
) -> None:
    assert dag_lines(**fields) == [line]


def test_yaml_on_is_refused_not_read_as_true() -> None:
    # YAML 1.1 reads a bare ``on:`` key as the boolean true: the key is unknown either way
    lines = dag_lines(notify=[{"webhook_env": "SLACK", True: ["failed"]}])
    assert lines == [
        "d.yaml, field 'notify.0': DagValidationError: unknown key 'on' (YAML reads a bare on: "
        "as true): write events: [failed, ...]"
    ]


def test_a_schedule_entry_takes_the_same_keys_with_its_own_lines() -> None:
    entry = {"id": "nightly", "cron": "0 2 * * *", "dag": "dags/x.yaml", "tenant": "acme"}
    (good,) = parse_schedules([{**entry, "deadline_s": 900, "on_failure": ["page_owner"]}])
    assert good.alerts == Alerts(deadline_s=900, on_failure=("page_owner",))
    with pytest.raises(SpecError) as caught:
        parse_schedules([{**entry, "notify": [{"webhook_env": "1X"}]}], source="s.yaml")
    assert caught.value.lines() == [
        "s.yaml, schedule 'nightly', field 'notify[].webhook_env': ScheduleError: expected an "
        "environment variable name (letters, digits and '_', not starting with a digit), got "
        "the string '1X'"
    ]
    (bad,) = parse_schedules([{**entry, "on_failure": ["nope"]}])
    (problem,) = unknown_schedule_hooks([bad], "s.yaml", KNOWN)
    assert problem.one_line().startswith(
        "s.yaml, schedule 'nightly', field 'on_failure': ScheduleError: unknown workflow 'nope'"
    )


def test_a_schedules_alerts_are_added_to_the_dags() -> None:
    dag = Alerts(deadline_s=60, on_failure=("a",), notify=(Webhook(webhook_env="X"),))
    schedule = Alerts(deadline_s=30, on_failure=("a", "b"), notify=(Webhook(webhook_env="Y"),))
    merged = dag.merged(schedule)
    assert merged.on_failure == ("a", "b")
    assert [w.webhook_env for w in merged.notify] == ["X", "Y"]
    assert merged.deadline_s == 60  # the DAG's (retries count it from their own start)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("failed", ("failed:on_failure:h1", "failed:webhook:W1")),
        ("success", ("success:on_success:h2",)),
        ("cancelled", ()),
    ],
)
def test_what_each_run_end_tells(status: str, expected: tuple[str, ...]) -> None:
    alerts = Alerts(
        on_failure=("h1",),
        on_success=("h2",),
        notify=(Webhook(webhook_env="W1"), Webhook(webhook_env="W2", events=("deadline_missed",))),
    )
    plan = RunPlan("d", "t", {}, alerts=alerts)
    assert end_notices(plan, trigger_of(status)) == expected
    assert end_notices(plan, "deadline_missed") == (
        "deadline_missed:webhook:W1",
        "deadline_missed:webhook:W2",
    )
    # a webhook is told of success only when it asks
    assert "success:webhook:W1" not in end_notices(plan, "success")


def test_deadlines_count_from_the_start_or_the_scheduled_minute_whichever_is_first() -> None:
    minute = "2026-01-01T10:00:00Z"  # 1767261600
    start = 1767261600.0 + 120  # the run starts two minutes late
    assert deadline_fields(start, Alerts()) == {}
    assert deadline_fields(start, Alerts(deadline_s=60)) == {
        "deadline_at": start + 60,
        "deadline_s": 60.0,
    }
    # the schedule's 150 s from the minute fall before the DAG's 60 s from the start
    assert deadline_fields(start, Alerts(deadline_s=60), Alerts(deadline_s=150), minute) == {
        "deadline_at": 1767261600.0 + 150,
        "deadline_s": 150.0,
    }
    assert deadline_fields(start, Alerts(), Alerts(deadline_s=600), minute)["deadline_at"] == (
        1767261600.0 + 600
    )


def test_retries_back_off_doubling_to_a_cap() -> None:
    assert [backoff_s(n, 5) for n in (1, 2, 3)] == [5, 10, 20]
    assert backoff_s(40, 5) == 600


def test_the_webhook_body_is_slack_compatible_and_carries_the_summary() -> None:
    summary = {
        "event": "failed",
        "run_id": "r1",
        "dag_name": "nightly",
        "tenant_id": "acme",
        "status": "failed",
        "duration_s": 3.5,
        "failed_count": 2,
        "failed_tasks": [
            {"task_id": "load", "attempts": 3, "error": "ValueError: boom"},
            {"task_id": "x", "attempts": 1, "error": "E"},
        ],
    }
    body = webhook_body(summary)
    assert body["text"] == (
        ":x: dagflow run failed: nightly (tenant acme), run r1\n"
        "Failed: load: ValueError: boom (and 1 more)\n"
        "Inspect: `dagflow status r1`"
    )
    (attachment,) = body["attachments"]
    assert attachment["color"] == "danger"
    titles = [f["title"] for f in attachment["fields"]]
    assert titles == ["DAG", "Tenant", "Status", "Run", "Duration (s)", "Task load", "Task x"]
    assert body["dagflow"] == summary


def test_plan_shows_the_alerts() -> None:
    alerts = Alerts(deadline_s=3600, on_failure=("p",), notify=(Webhook(webhook_env="S"),))
    assert alert_lines(alerts) == [
        "Deadline: 3600 s after the run starts",
        "Hooks on_failure: p",
        "Webhook $S: on failed, deadline_missed",
    ]
    assert alert_lines(Alerts()) == []


def test_a_schedules_alerts_travel_with_its_firing_and_job() -> None:
    from dagflow.scheduling.firing import Firing

    alerts = Alerts(deadline_s=900, on_failure=("page_owner",)).to_data()
    firing = Firing(
        schedule_id="nightly",
        dag="dags/x.yaml",
        tenant="acme",
        scheduled_minute="2026-01-01T02:00:00Z",
        run_id="r1",
        job_id="j1",
        alerts=alerts,
    )
    again = Firing.from_job(firing.job(1.0))
    assert again.alerts == alerts
    assert Alerts.from_data(again.alerts) == Alerts(deadline_s=900, on_failure=("page_owner",))
