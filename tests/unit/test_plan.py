"""The stored plan: links and joins derived once, its JSON round trip, and its version check."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from dagflow.dag.alerts import Alerts, Webhook
from dagflow.dag.plan import PLAN_VERSION, RunPlan, TaskPlan
from dagflow.errors import PlanVersionError, RunnerError

# child -> parents, in file order
DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}


def build(
    parents: dict[str, tuple[str, ...]],
    timeouts: dict[str, float] | None = None,
    *,
    params: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> RunPlan:
    """A plan of ``parents``' shape; task number i has workflow ``wf.<id>``, params
    ``{"n": i}`` and i retries."""
    children = {t: tuple(c for c, ps in parents.items() if t in ps) for t in parents}
    tasks = {t: (f"wf.{t}", {"n": i}, i, (timeouts or {}).get(t)) for i, t in enumerate(parents)}
    return RunPlan.build("g", "acme", tasks, parents, children, params=params, labels=labels)


@pytest.fixture
def diamond() -> RunPlan:
    return build(DIAMOND, {"b": 2.5}, params={"day": "2026-01-05"}, labels={"retry_of": "r0"})


def test_build_keeps_each_tasks_fields(diamond: RunPlan) -> None:
    assert diamond.tasks["c"] == TaskPlan(
        workflow_ref="wf.c",
        params={"n": 2},
        retries=2,
        parents=("a",),
        children=("d",),
        timeout_s=None,
        links=(),
        joins=(("d", 2),),
    )
    assert diamond.tasks["b"].timeout_s == 2.5
    assert diamond.version == PLAN_VERSION


@pytest.mark.parametrize(
    ("shape", "task", "links", "joins"),
    [
        # a child whose only parent is this task is a link; one with several parents a join
        ({"a": (), "b": ("a",)}, "a", ("b",), ()),
        (DIAMOND, "a", ("b", "c"), ()),
        (DIAMOND, "b", (), (("d", 2),)),
        ({"a": (), "b": (), "c": ("a",), "d": ("a", "b")}, "a", ("c",), (("d", 2),)),
        ({"x": (), "y": (), "z": (), "j": ("x", "y", "z")}, "y", (), (("j", 3),)),
        ({"a": (), "b": ("a",)}, "b", (), ()),
    ],
    ids=["chain", "fan-out", "join", "shared join", "three-way join", "leaf"],
)
def test_links_and_joins_are_derived_from_the_parent_counts(
    shape: dict[str, tuple[str, ...]],
    task: str,
    links: tuple[str, ...],
    joins: tuple[tuple[str, int], ...],
) -> None:
    plan = build(shape)
    assert (plan.tasks[task].links, plan.tasks[task].joins) == (links, joins)


def test_round_trip_keeps_everything_a_worker_reads(diamond: RunPlan) -> None:
    back = RunPlan.from_json(diamond.to_json())
    assert back == diamond
    assert list(back.tasks) == ["a", "b", "c", "d"]  # plan order survives
    assert back.params == {"day": "2026-01-05"} and back.labels == {"retry_of": "r0"}


def test_json_is_compact_and_names_its_version(diamond: RunPlan) -> None:
    raw = diamond.to_json()
    data = json.loads(raw)
    assert raw == json.dumps(data, separators=(",", ":"))
    # A plan without trigger rules or branches is still written as version 3: workers of
    # the previous version run it correctly.
    assert (data["version"], data["dag"], data["tenant"]) == (3, "g", "acme")
    assert PLAN_VERSION == 5  # the README documents "plan version 5" (maps)


def test_json_leaves_out_a_timeout_that_is_not_set(diamond: RunPlan) -> None:
    tasks = json.loads(diamond.to_json())["tasks"]
    assert tasks["b"]["timeout_s"] == 2.5
    assert "timeout_s" not in tasks["a"]
    # links and joins are derived again by the reader, never stored
    assert set(tasks["d"]) == {"workflow_ref", "params", "retries", "parents", "children"}


def test_run_params_and_labels_default_to_empty() -> None:
    plan = build({"a": ()})
    assert (plan.params, plan.labels) == ({}, {})
    data = json.loads(plan.to_json())
    assert (data["params"], data["labels"]) == ({}, {})


def test_a_plan_with_null_params_and_labels_reads_as_empty(diamond: RunPlan) -> None:
    data = json.loads(diamond.to_json()) | {"params": None, "labels": None}
    plan = RunPlan.from_json(json.dumps(data))
    assert (plan.params, plan.labels) == ({}, {})


def test_build_copies_the_run_params_it_is_given() -> None:
    params = {"day": "x"}
    plan = build({"a": ()}, params=params)
    params["day"] = "changed"
    assert plan.params == {"day": "x"}


@pytest.mark.parametrize("version", [2, 6, None, "3", True])
def test_a_plan_of_another_version_is_refused_with_both_versions_named(
    diamond: RunPlan, version: object
) -> None:
    # Given a plan written by another dagflow (a rolling upgrade)
    data = json.loads(diamond.to_json()) | {"version": version}
    # When a worker reads it, then it refuses, naming both versions
    with pytest.raises(PlanVersionError) as caught:
        RunPlan.from_json(json.dumps(data))
    assert str(caught.value) == (
        f"stored plan has version {version!r}; this dagflow reads version 3, 4 or 5 "
        "(run the same dagflow version on clients and workers)"
    )


def test_an_old_short_version_key_is_read(diamond: RunPlan) -> None:
    data = json.loads(diamond.to_json())
    del data["version"]
    with pytest.raises(PlanVersionError, match="stored plan has version 2;"):
        RunPlan.from_json(json.dumps(data | {"v": 2}))
    assert RunPlan.from_json(json.dumps(data | {"v": PLAN_VERSION})) == diamond


@pytest.mark.parametrize("raw", ["[]", '"plan"', "{}"])
def test_json_that_is_not_a_plan_is_a_version_error(raw: str) -> None:
    with pytest.raises(PlanVersionError, match="stored plan has version None;"):
        RunPlan.from_json(raw)


def test_plan_version_error_is_a_runner_error() -> None:
    assert issubclass(PlanVersionError, RunnerError)


@pytest.mark.parametrize(
    ("task", "expected"),
    [("a", ["b", "c", "d"]), ("b", ["d"]), ("d", [])],
)
def test_descendants_are_every_task_downstream_sorted(
    diamond: RunPlan, task: str, expected: list[str]
) -> None:
    assert diamond.descendants(task) == expected


def test_descendants_are_sorted_by_id_not_plan_order() -> None:
    plan = build({"root": (), "z": ("root",), "m": ("z",), "a": ("root",)})
    assert plan.descendants("root") == ["a", "m", "z"]


def ruled(rules: dict[str, str], branches: tuple[str, ...] = ()) -> RunPlan:
    """The diamond with trigger rules and branch tasks."""
    children = {t: tuple(c for c, ps in DIAMOND.items() if t in ps) for t in DIAMOND}
    tasks = {t: (f"wf.{t}", {}, 0, None) for t in DIAMOND}
    return RunPlan.build("g", "acme", tasks, DIAMOND, children, rules=rules, branches=branches)


def test_trigger_rules_and_branches_survive_the_round_trip() -> None:
    # Given a plan with a cleanup join and a branch
    plan = ruled({"d": "all_done"}, ("a",))
    assert plan.ruled and plan.tasks["d"].trigger_rule == "all_done" and plan.tasks["a"].branch
    # When it is stored and read back, then nothing is lost, and it is a version 4 plan
    data = json.loads(plan.to_json())
    assert data["version"] == 4 and PLAN_VERSION == 5  # version 5 only with alerts
    assert data["tasks"]["d"]["trigger_rule"] == "all_done" and data["tasks"]["a"]["branch"]
    assert "trigger_rule" not in data["tasks"]["b"] and "branch" not in data["tasks"]["b"]
    assert RunPlan.from_json(plan.to_json()) == plan


def test_a_version_3_plan_loads_with_every_task_all_success(diamond: RunPlan) -> None:
    # Given a plan stored by the previous dagflow (version 3, no rule fields)
    data = json.loads(diamond.to_json())
    assert data["version"] == 3
    # When it is read, then every task is all_success and no task is a branch
    plan = RunPlan.from_json(json.dumps(data))
    assert not plan.ruled
    assert {t.trigger_rule for t in plan.tasks.values()} == {"all_success"}
    assert not any(t.branch for t in plan.tasks.values())


def test_a_plan_without_rules_is_byte_identical_to_version_3(diamond: RunPlan) -> None:
    assert not diamond.ruled
    assert '"trigger_rule"' not in diamond.to_json() and '"branch"' not in diamond.to_json()


def test_a_tasks_queue_survives_the_round_trip() -> None:
    # Given a plan where one task has a queue and the others take the default route
    children = {"a": ("b",), "b": ()}
    tasks = {t: (f"wf.{t}", {}, 0, None) for t in children}
    plan = RunPlan.build("g", "acme", tasks, {"a": (), "b": ("a",)}, children, queues={"b": "gpu"})
    # When it is stored and read back
    back = RunPlan.from_json(plan.to_json())
    # Then the queue is there, and only the task that has one writes it
    assert back == plan
    assert (back.tasks["a"].queue, back.tasks["b"].queue) == (None, "gpu")
    assert back.queues == {"b": "gpu"}
    raw = json.loads(plan.to_json())["tasks"]
    assert "queue" not in raw["a"] and raw["b"]["queue"] == "gpu"


def test_a_plan_without_queues_has_none(diamond: RunPlan) -> None:
    assert diamond.queues == {}
    assert all(task.queue is None for task in diamond.tasks.values())
    assert all("queue" not in t for t in json.loads(diamond.to_json())["tasks"].values())


def test_an_old_version_3_plan_loads_with_every_step_on_the_default_route(
    diamond: RunPlan,
) -> None:
    # Given a plan a dagflow before queues wrote (version 3, no queue keys)
    data = json.loads(diamond.to_json()) | {"version": 3}
    # When a worker reads it, then it loads, with no queues, as this dagflow's version
    old = RunPlan.from_json(json.dumps(data))
    assert old.queues == {}
    assert old.tasks == diamond.tasks
    assert old.version == PLAN_VERSION


def test_a_mapped_task_survives_the_round_trip_as_a_version_5_plan() -> None:
    # Given b maps over a's files, at most 3 at once
    children = {t: tuple(c for c, ps in DIAMOND.items() if t in ps) for t in DIAMOND}
    tasks = {t: (f"wf.{t}", {}, 0, None) for t in DIAMOND}
    plan = RunPlan.build("g", "acme", tasks, DIAMOND, children, maps={"b": ("a", "files", 3)})
    # Then it takes the rule path, knows its instances, and is stored as version 5
    assert plan.ruled and plan.mapped
    assert plan.knows("b[7]") and not plan.knows("c[7]") and not plan.knows("b[x]")
    assert plan.task("b[7]") is plan.tasks["b"]
    assert plan.descendants("b[2]") == ["d"]
    data = json.loads(plan.to_json())
    assert data["version"] == PLAN_VERSION == 5
    assert data["tasks"]["b"]["map"] == ["a", "files"] and data["tasks"]["b"]["max_parallel"] == 3
    assert RunPlan.from_json(plan.to_json()) == plan


def test_a_plan_with_alerts_is_version_5_and_keeps_them(diamond: RunPlan) -> None:
    # Given a run with a deadline, hooks and a webhook
    alerts = Alerts(
        deadline_s=60,
        on_failure=("page",),
        notify=(Webhook(webhook_env="SLACK", events=("failed",)),),
    )
    plan = replace(diamond, alerts=alerts)
    # When it is stored and read back
    data = json.loads(plan.to_json())
    # Then it is version 5 (an older worker refuses it rather than tell nobody), and whole
    assert data["version"] == 5
    assert data["alerts"] == {
        "deadline_s": 60.0,
        "on_failure": ["page"],
        "notify": [{"webhook_env": "SLACK", "events": ["failed"]}],
    }
    assert RunPlan.from_json(plan.to_json()) == plan
    # and a plan without alerts is still version 3, or 4 with rules
    assert json.loads(diamond.to_json())["version"] == 3
    ruled = replace(diamond, tasks={**diamond.tasks, "b": replace(diamond.tasks["b"], branch=True)})
    assert json.loads(ruled.to_json())["version"] == 4
    assert json.loads(replace(ruled, alerts=alerts).to_json())["version"] == 5
