"""Mapped tasks in the run store contract: both stores expand and join them the same way.

A parent's end records how many instances each mapped child gets (``maps``), and the same
atomic call expands the child when its rule is met: ``TASK[i]`` pending, the first
``max_parallel`` ready. Each instance's end starts the next one; the last one ends the
mapped task (its output the instances' outputs in item order) and decides its children.
"""

from __future__ import annotations

import json
import uuid

import pytest

from dagflow.dag.plan import RunPlan
from dagflow.execution.fanout import finish_gates, map_lengths
from dagflow.stores import FinishResult, RunStore
from dagflow.stores.base import FinishRequest

pytestmark = pytest.mark.integration


def make_plan(
    most: int | None = None, rule: str = "all_success", extra_parent: bool = False
) -> RunPlan:
    """list -> process[*] (map over list.files) -> merge; with ``extra_parent``, ``other``
    is a second parent of process."""
    parents: dict[str, tuple[str, ...]] = {"list": (), "process": ("list",), "merge": ("process",)}
    if extra_parent:
        parents = {"list": (), "other": (), "process": ("list", "other"), "merge": ("process",)}
    children = {t: tuple(c for c, ps in parents.items() if t in ps) for t in parents}
    tasks = {t: ("noop", {}, 0, None) for t in parents}
    return RunPlan.build(
        "d",
        "t",
        tasks,
        parents,
        children,
        rules={"merge": rule} if rule != "all_success" else {},
        maps={"process": ("list", "files", most)},
    )


def start(store: RunStore, plan: RunPlan) -> str:
    run_id = uuid.uuid4().hex
    store.create_run(run_id, plan.to_json(), {"dag_name": "d", "tenant_id": "t"}, list(plan.tasks))
    return run_id


def end(
    store: RunStore,
    plan: RunPlan,
    run_id: str,
    task: str,
    state: str = "ok",
    output: object = None,
) -> FinishResult:
    """Claim ``task`` and end it, as a step does (gates, and map lengths of its output)."""
    claim = store.claim(run_id, task, f"m-{task}-{uuid.uuid4().hex[:6]}", "w", 60)
    assert claim.state == "run", (task, claim)
    value = output if output is not None else {"task": task}
    lengths = map_lengths(plan, task, value, 10_000) if state == "ok" else {}
    return store.finish(
        FinishRequest(
            run_id,
            task,
            claim.fence,
            state,  # type: ignore[arg-type]
            json.dumps(value) if state == "ok" else None,
            total=len(plan.tasks),
            gates=finish_gates(plan, task),
            maps=lengths,
        )
    )


def states(store: RunStore, run_id: str) -> dict[str, str]:
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None
    return dict(snap.states or {})


def test_the_parents_end_expands_the_mapped_task_in_the_same_call(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    result = end(store, plan, run_id, "list", output={"files": ["a", "b", "c"]})
    assert result.mapped.expanded == {"process": 3}
    assert sorted(result.ready) == ["process[0]", "process[1]", "process[2]"]
    seen = states(store, run_id)
    assert seen["process"] == "mapped"
    assert [seen[f"process[{i}]"] for i in range(3)] == ["pending"] * 3
    snap = store.snapshot(run_id)
    assert snap is not None and snap.counts["total"] == 3 + 3
    # The mapped task itself never runs: a message for it is dropped.
    assert store.claim(run_id, "process", "stray", "w", 60).state == "mapped"


def test_a_duplicate_end_of_the_parent_expands_nothing_twice(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    claim = store.claim(run_id, "list", "m1", "w", 60)
    value = {"files": ["a", "b"]}
    request = FinishRequest(
        run_id,
        "list",
        claim.fence,
        "ok",
        json.dumps(value),
        total=3,
        gates=finish_gates(plan, "list"),
        maps=map_lengths(plan, "list", value, 10_000),
    )
    first = store.finish(request)
    again = store.finish(request)
    assert first.mapped.expanded == {"process": 2} and len(first.ready) == 2
    assert not again.recorded and again.ready == () and not again.mapped.expanded
    snap = store.snapshot(run_id)
    assert snap is not None and snap.counts["total"] == 3 + 2


def test_the_last_instance_ends_the_task_with_results_in_item_order(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    end(store, plan, run_id, "list", output={"files": ["a", "b", "c"]})
    for i in (2, 0):
        result = end(store, plan, run_id, f"process[{i}]", output={"i": i})
        assert result.ready == () and not result.mapped.ended
    last = end(store, plan, run_id, "process[1]", output={"i": 1})
    assert last.mapped.ended == {"process": "ok"}
    assert last.ready == ("merge",)
    out = store.outputs(run_id, ["process"])["process"]
    assert json.loads(out) == {"results": [{"i": 0}, {"i": 1}, {"i": 2}]}
    merged = end(store, plan, run_id, "merge")
    assert merged.complete and merged.counts["ok"] == 1 + 1 + 3 + 1


def test_max_parallel_starts_the_next_instance_as_one_ends(store: RunStore) -> None:
    plan = make_plan(most=2)
    run_id = start(store, plan)
    first = end(store, plan, run_id, "list", output={"files": list(range(5))})
    assert first.ready == ("process[0]", "process[1]")
    started = list(first.ready)
    running = list(first.ready)
    while running:
        task = running.pop(0)
        result = end(store, plan, run_id, task)
        new = [t for t in result.ready if t.startswith("process[")]
        assert len(new) <= 1
        started += new
        running += new
        # never more than two instances started and not ended
        assert len(running) <= 2
    assert started == [f"process[{i}]" for i in range(5)]
    assert states(store, run_id)["process"] == "ok"


def test_a_failed_instance_fails_the_task_and_skips_its_children(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    end(store, plan, run_id, "list", output={"files": ["a", "b", "c"]})
    end(store, plan, run_id, "process[0]")
    end(store, plan, run_id, "process[1]", state="failed")
    last = end(store, plan, run_id, "process[2]")
    assert last.mapped.ended == {"process": "failed"}
    assert "1 of 3 instances failed" in last.mapped.errors["process"]
    assert last.newly_skipped == ("merge",)
    assert last.complete
    results = json.loads(store.outputs(run_id, ["process"])["process"])["results"]
    assert results[1] is None and results[0] == {"task": "process[0]"}
    info = {t.task_id: t for t in store.tasks(run_id)}
    assert "1 of 3 instances failed" in (info["process"].last.error or "")


def test_a_cleanup_child_runs_after_a_failed_instance(store: RunStore) -> None:
    plan = make_plan(rule="all_done")
    run_id = start(store, plan)
    end(store, plan, run_id, "list", output={"files": ["a", "b"]})
    end(store, plan, run_id, "process[0]", state="failed")
    last = end(store, plan, run_id, "process[1]")
    assert last.mapped.ended == {"process": "failed"} and last.ready == ("merge",)


def test_an_empty_list_ends_the_task_at_once_with_no_results(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    result = end(store, plan, run_id, "list", output={"files": []})
    assert result.mapped.expanded == {"process": 0}
    assert result.mapped.ended == {"process": "ok"}
    assert result.ready == ("merge",)
    assert json.loads(store.outputs(run_id, ["process"])["process"]) == {"results": []}


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ({"other": 1}, "no such key"),
        ({"files": "a.csv"}, "holds str, not a list"),
        ([1, 2], "returned no mapping"),
    ],
)
def test_an_unusable_list_fails_the_mapped_task_naming_task_and_key(
    store: RunStore, output: object, error: str
) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    result = end(store, plan, run_id, "list", output=output)
    assert result.mapped.ended == {"process": "failed"}
    message = result.mapped.errors["process"]
    assert "Task 'process' maps over list.files" in message and error in message
    assert result.newly_skipped == ("merge",) and result.complete


def test_over_the_cap_fails_the_mapped_task_naming_the_length(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    claim = store.claim(run_id, "list", "m1", "w", 60)
    value = {"files": list(range(7))}
    result = store.finish(
        FinishRequest(
            run_id,
            "list",
            claim.fence,
            "ok",
            json.dumps(value),
            total=3,
            gates=finish_gates(plan, "list"),
            maps=map_lengths(plan, "list", value, 5),
        )
    )
    assert "a list of 7 items, over DAGFLOW_MAP_MAX (5)" in result.mapped.errors["process"]


def test_a_second_parent_expands_it_when_it_ends_last(store: RunStore) -> None:
    plan = make_plan(extra_parent=True)
    run_id = start(store, plan)
    first = end(store, plan, run_id, "list", output={"files": ["a", "b"]})
    assert first.ready == () and not first.mapped.expanded
    second = end(store, plan, run_id, "other")
    assert second.mapped.expanded == {"process": 2}
    assert sorted(second.ready) == ["process[0]", "process[1]"]


def test_cancel_ends_every_instance_and_the_mapped_task(store: RunStore) -> None:
    plan = make_plan()
    run_id = start(store, plan)
    end(store, plan, run_id, "list", output={"files": ["a", "b", "c"]})
    result = store.cancel(run_id)
    assert result.state == "cancelled" and result.complete
    assert set(result.newly_cancelled) == {
        "process",
        "process[0]",
        "process[1]",
        "process[2]",
        "merge",
    }
