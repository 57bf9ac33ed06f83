"""The run context a two-argument workflow gets: built from the plan, read-only."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import dagflow
from dagflow.workflows.context import RunContext


def build(labels: dict[str, str], params: dict[str, Any] | None = None) -> RunContext:
    return RunContext.build(
        "run-1",
        "export",
        2,
        7,
        dag_name="daily_report",
        tenant_id="acme",
        params=params if params is not None else {"day": "2026-01-05"},
        labels=labels,
    )


@pytest.fixture
def scheduled() -> RunContext:
    return build({"schedule_id": "nightly", "scheduled_minute": "2026-11-26T10:05:00Z"})


def test_build_places_the_attempt_and_the_run(scheduled: RunContext) -> None:
    assert (scheduled.run_id, scheduled.task_id, scheduled.attempt, scheduled.fence) == (
        "run-1",
        "export",
        2,
        7,
    )
    assert (scheduled.dag_name, scheduled.tenant_id) == ("daily_report", "acme")
    assert scheduled.params == {"day": "2026-01-05"}


@pytest.mark.parametrize(
    ("labels", "schedule_id", "minute", "retry_of"),
    [
        ({}, None, None, None),
        (
            {"schedule_id": "nightly", "scheduled_minute": "2026-11-26T10:05:00Z"},
            "nightly",
            "2026-11-26T10:05:00Z",
            None,
        ),
        ({"retry_of": "run-0"}, None, None, "run-0"),
        # an empty label is no label
        ({"schedule_id": "", "scheduled_minute": "", "retry_of": ""}, None, None, None),
        # labels the context does not show are ignored
        ({"job_id": "j1", "source": "cli"}, None, None, None),
    ],
    ids=["manual", "scheduled", "retry", "empty labels", "other labels"],
)
def test_labels_become_the_scheduled_and_retry_fields(
    labels: dict[str, str], schedule_id: str | None, minute: str | None, retry_of: str | None
) -> None:
    ctx = build(labels)
    assert (ctx.schedule_id, ctx.scheduled_minute, ctx.retry_of) == (schedule_id, minute, retry_of)


def test_params_are_read_only(scheduled: RunContext) -> None:
    with pytest.raises(TypeError):
        scheduled.params["day"] = "tomorrow"  # type: ignore[index]


def test_params_are_a_copy_of_the_plans() -> None:
    # Given the plan's params
    params = {"day": "2026-01-05"}
    ctx = build({}, params)
    # When the dict they came from changes afterwards
    params["day"] = "changed"
    # Then the workflow still sees the run's params
    assert ctx.params == {"day": "2026-01-05"}


def test_the_context_is_frozen(scheduled: RunContext) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheduled.fence = 8  # type: ignore[misc]


def test_a_context_made_directly_has_no_params_and_no_labels() -> None:
    ctx = RunContext("r", "d", "t", "task", attempt=1, fence=1)
    assert ctx.params == {}
    assert (ctx.schedule_id, ctx.scheduled_minute, ctx.retry_of) == (None, None, None)


def test_it_is_the_public_dagflow_run_context() -> None:
    assert dagflow.RunContext is RunContext
