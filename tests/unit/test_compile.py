"""Compilation: which parts are canvas, which are joins, and how small a message is."""

from __future__ import annotations

from celery import Celery

from dagflow.dag.compile import STEP_TASK, compile_dag, describe, step_name
from dagflow.dag.plan import RunPlan
from dagflow.dag.spec import parse_dag


def compiled(edges: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    tasks = [
        {"id": t, "workflow_ref": "w", "depends_on": d, "params": {"n": i}, "retries": 1}
        for i, (t, d) in enumerate(edges.items())
    ]
    return compile_dag(parse_dag({"name": "g", "tenant_id": "t", "tasks": tasks}))


def test_links_and_joins_for_the_shape_canvases_cannot_express() -> None:
    dag = compiled({"A": [], "B": [], "C": ["A"], "D": ["A", "B"]})
    assert dag.links == [("A", "C")]
    assert dag.joins == {"D": ("A", "B")}
    text = "\n".join(describe(dag))
    assert "group(step(A), step(B))" in text
    assert "A -> C  chain link" in text
    assert "A, B -> D" in text


def test_fan_out_is_a_group_continuation() -> None:
    dag = compiled({"a": [], "b": ["a"], "c": ["a"]})
    assert "a -> b, c  fan-out (sent together)" in "\n".join(describe(dag))


def test_plan_round_trips_to_what_workers_read() -> None:
    dag = compiled({"a": [], "b": ["a"], "c": ["a", "b"]})
    plan = RunPlan.from_json(dag.plan().to_json())
    assert (plan.dag_name, plan.tenant_id) == ("g", "t")
    assert plan.tasks["c"].parents == ("a", "b")
    assert plan.tasks["a"].children == ("b", "c")
    assert plan.tasks["b"].params == {"n": 1} and plan.tasks["b"].retries == 1
    assert plan.descendants("a") == ["b", "c"]
    # what a step sends when it succeeds: chain links at once, joins through the store
    assert plan.tasks["a"].links == ("b",) and plan.tasks["a"].joins == (("c", 2),)
    assert plan.tasks["b"].links == () and plan.tasks["b"].joins == (("c", 2),)


def test_start_canvas_is_one_signature_or_a_group_of_roots() -> None:
    app = Celery(set_as_current=False)
    single = compiled({"a": [], "b": ["a"]}).start_canvas(app, "r1")
    assert single.task == STEP_TASK and single.args == ("r1", "a") and single.immutable
    both = compiled({"a": [], "b": []}).start_canvas(app, "r1")
    assert [s.args for s in both.tasks] == [("r1", "a"), ("r1", "b")]


def test_steps_are_sent_under_the_dag_and_task_name() -> None:
    # Flower, `celery events` and worker logs show the shadow name, not `dagflow.step`
    app = Celery(set_as_current=False)
    dag = compiled({"a": [], "b": []})
    canvas = dag.start_canvas(app, "r1")
    assert [s.options["shadow"] for s in canvas.tasks] == [
        f"{dag.spec.name}:a",
        f"{dag.spec.name}:b",
    ]
    assert step_name("weekly_ops_chain", "report") == "weekly_ops_chain:report"
    assert step_name(None, "report") == STEP_TASK
