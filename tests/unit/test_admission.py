"""Which ``max_active_runs`` slots a run needs, and how they are kept and described."""

from __future__ import annotations

from typing import Any

import pytest

from dagflow.execution.admission import (
    Slot,
    run_slots,
    slots_from_json,
    slots_to_json,
    waiting_line,
)
from dagflow.settings import Settings

#: No tenant cap (DAGFLOW_TENANT_MAX_ACTIVE_RUNS=0): only the other limits apply.
DEFAULT = Settings(tenant_max_active_runs=0)
TENANTS = Settings(tenant_max_active_runs=8, tenant_limits=(("acme", 4), ("free", 0)))

CASES = {
    # name: (tenant, labels, dag limit, settings, expected slots)
    "no limit starts at once": ("acme", {}, None, DEFAULT, []),
    "fair by default": ("acme", {}, None, Settings(), [Slot("tenant:acme", 64)]),
    "dag limit 0 is no limit": ("acme", {}, 0, DEFAULT, []),
    "dag limit": ("acme", {}, 2, DEFAULT, [Slot("dag:nightly", 2)]),
    "tenant override": ("acme", {}, None, TENANTS, [Slot("tenant:acme", 4)]),
    "tenant default": ("beta", {}, None, TENANTS, [Slot("tenant:beta", 8)]),
    "tenant override to no limit": ("free", {}, None, TENANTS, []),
    "scheduled": ("acme", {"schedule_id": "s1"}, None, DEFAULT, [Slot("scheduled", 3)]),
    "job retry": ("acme", {"job_id": "j1"}, None, DEFAULT, [Slot("scheduled", 3)]),
    "empty schedule label": ("acme", {"schedule_id": ""}, None, DEFAULT, []),
    "retry of a run is not scheduled": ("acme", {"retry_of": "r0"}, None, DEFAULT, []),
    "every limit, dag first": (
        "acme",
        {"schedule_id": "s1"},
        1,
        Settings(sched_max_parallel=5, tenant_limits=(("acme", 4),)),
        [Slot("dag:nightly", 1), Slot("tenant:acme", 4), Slot("scheduled", 5)],
    ),
}


@pytest.mark.parametrize(
    ("tenant", "labels", "dag_limit", "settings", "expected"), CASES.values(), ids=CASES.keys()
)
def test_run_slots(
    tenant: str,
    labels: dict[str, Any],
    dag_limit: int | None,
    settings: Settings,
    expected: list[Slot],
) -> None:
    assert run_slots("nightly", tenant, labels, dag_limit, settings) == expected


@pytest.mark.parametrize(
    ("slot", "text"),
    [
        (Slot("dag:nightly", 1), "dag nightly (1 at once)"),
        (Slot("tenant:acme", 2), "tenant acme (2 at once)"),
        (Slot("scheduled", 3), "scheduled runs (3 at once)"),
        (Slot("tenant:a:b", 4), "tenant a:b (4 at once)"),
    ],
)
def test_describe(slot: Slot, text: str) -> None:
    assert slot.describe() == text


def test_waiting_line_lists_every_limit_in_order() -> None:
    slots = [Slot("dag:nightly", 1), Slot("tenant:acme", 2)]
    assert waiting_line(slots) == (
        "waiting for a slot: dag nightly (1 at once), tenant acme (2 at once)"
    )


def test_slot_key_is_a_dagflow_slots_key() -> None:
    assert Slot("tenant:acme", 2).key == "dagflow:slots:tenant:acme"
    assert Slot("scheduled", 3).key == "dagflow:slots:scheduled"


def test_slots_round_trip_through_the_run_metadata() -> None:
    slots = [Slot("dag:nightly", 1), Slot("tenant:acme", 4), Slot("scheduled", 3)]
    raw = slots_to_json(slots)
    assert raw == [["dag:nightly", 1], ["tenant:acme", 4], ["scheduled", 3]]
    assert slots_from_json(raw) == slots


@pytest.mark.parametrize("raw", [None, []])
def test_a_run_under_no_limit_has_no_slots(raw: object) -> None:
    assert slots_from_json(raw) == []


def test_slots_read_back_from_strings_are_typed() -> None:
    # a store that kept the metadata as text gives the limit back as a string
    assert slots_from_json([["tenant:acme", "4"]]) == [Slot("tenant:acme", 4)]
