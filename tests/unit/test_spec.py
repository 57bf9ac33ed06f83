"""DAG file loading and validation: one table of bad inputs and the one line each gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dagflow.dag.load import check_dag, load_dag
from dagflow.dag.spec import FIELDS, DagSpec, TaskSpec, parse_dag
from dagflow.errors import CycleDetectedError, DagValidationError, SpecError, UnknownWorkflowError

KNOWN = ["inbox_drive_sweep", "w"]


def t(task_id: str, *deps: str, **kw: Any) -> dict[str, Any]:
    return {"id": task_id, "workflow_ref": "w", "depends_on": list(deps), **kw}


def dag(*tasks: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"name": "my_dag", "tenant_id": "t", "tasks": list(tasks), **top}


BAD: list[tuple[str, Any, type[SpecError], str]] = [
    ("root list", [1, 2], DagValidationError, "f.yaml: DagValidationError: the document must be a mapping"),
    ("empty file", None, DagValidationError, "must be a mapping with name, tenant_id and tasks, not empty"),
    ("missing tenant", {"name": "x", "tasks": [t("a")]}, DagValidationError, "f.yaml, field 'tenant_id': DagValidationError: required field is missing"),
    ("unknown top key", dag(t("a"), owner="me"), DagValidationError, "field 'owner': DagValidationError: unknown key"),
    ("unknown task key", dag(t("a", retry=3)), DagValidationError, "f.yaml, task 'a', field 'retry': DagValidationError: unknown key (did you mean 'retries'?)"),
    ("retries as string", dag(t("a", retries="2")), DagValidationError, "task 'a', field 'retries': DagValidationError: expected an integer between 0 and 100, got the string '2'"),
    ("negative retries", dag(t("a", retries=-1)), DagValidationError, "task 'a', field 'retries': DagValidationError: expected an integer between 0 and 100, got the integer -1"),
    ("too many retries", dag(t("a", retries=101)), DagValidationError, "expected an integer between 0 and 100, got the integer 101"),
    ("depends_on as string", dag(t("a"), {"id": "b", "workflow_ref": "w", "depends_on": "a"}), DagValidationError, "task 'b', field 'depends_on': DagValidationError: expected a list of task ids, got the string 'a' (write [a])"),
    ("tasks as mapping", dag() | {"tasks": {"a": 1}}, DagValidationError, "field 'tasks': DagValidationError: expected a list of tasks, got a mapping"),
    ("task not a mapping", dag() | {"tasks": ["a"]}, DagValidationError, "task '#1': DagValidationError: expected a task (a mapping"),
    ("zero timeout", dag(t("a", timeout_s=0)), DagValidationError, "field 'timeout_s': DagValidationError: expected a number of seconds greater than 0, got the number 0"),
    ("tenant for tenant_id", {"name": "x", "tenant": "t", "tasks": [t("a")]}, DagValidationError, "f.yaml, field 'tenant': DagValidationError: unknown key (did you mean 'tenant_id'?)"),
    ("params not a mapping", dag(t("a", params=[1])), DagValidationError, "task 'a', field 'params'"),
    ("date param", dag(t("a", params={"d": __import__("datetime").date(2025, 1, 1)})), DagValidationError, "quote dates"),
    ("task without id", dag({"workflow_ref": "w"}), DagValidationError, "task '#1', field 'id': DagValidationError: required field is missing"),
    ("bad id", dag(t("a b")), DagValidationError, "field 'id'"),
    ("no tasks", dag(), DagValidationError, "field 'tasks': DagValidationError: a DAG needs at least one task"),
    ("duplicate id", dag(t("a"), t("a")), DagValidationError, "task 'a', field 'id': DagValidationError: duplicate task id"),
    ("unknown dep", dag(t("a", "ghost")), DagValidationError, "task 'a', field 'depends_on': DagValidationError: depends on unknown task 'ghost'"),
    ("self dep", dag(t("a", "a")), DagValidationError, "task 'a', field 'depends_on': DagValidationError: a task cannot depend on itself"),
    ("cycle", dag(t("a", "b"), t("b", "a")), CycleDetectedError, "f.yaml: CycleDetectedError: Cycle detected in DAG 'my_dag': a -> b -> a"),
    ("long cycle", dag(t("x"), t("a", "c", "x"), t("b", "a"), t("c", "b")), CycleDetectedError, "Cycle detected in DAG 'my_dag': a -> b -> c -> a"),
    ("unknown workflow", dag({"id": "a", "workflow_ref": "invalid_workflow"}), UnknownWorkflowError, "task 'a', field 'workflow_ref': RunnerError: Unknown workflow: invalid_workflow (known: inbox_drive_sweep, w)"),
    ("param collides", dag(t("a"), t("b", "a", params={"a__summary": 1})), DagValidationError, "task 'b', field 'params.a__summary': DagValidationError: param 'a__summary' would collide"),
    ("queue as integer", dag(t("a", queue=5)), DagValidationError, "f.yaml, task 'a', field 'queue': DagValidationError: expected a queue name (1-128 letters, digits, '_', '-', '.' or ':', not starting with '-'), got the integer 5"),
    ("queue as list", dag(t("a", queue=["gpu"])), DagValidationError, "task 'a', field 'queue': DagValidationError: expected a queue name"),
    ("empty queue", dag(t("a", queue="")), DagValidationError, "task 'a', field 'queue': DagValidationError: expected a queue name (1-128 letters, digits, '_', '-', '.' or ':', not starting with '-'), got an empty string"),
    ("queue with a space", dag(t("a", queue="gpu 1")), DagValidationError, "task 'a', field 'queue': DagValidationError: expected a queue name (1-128 letters, digits, '_', '-', '.' or ':', not starting with '-'), got the string 'gpu 1'"),
    ("queue with a comma", dag(t("a", queue="a,b")), DagValidationError, "task 'a', field 'queue': DagValidationError: expected a queue name"),
    ("queue with a newline", dag(t("a", queue="gpu\n")), DagValidationError, "task 'a', field 'queue'"),
    ("queue like an option", dag(t("a", queue="-Q")), DagValidationError, "task 'a', field 'queue'"),
    ("queue too long", dag(t("a", queue="q" * 129)), DagValidationError, "task 'a', field 'queue'"),
    ("dag queue as boolean", dag(t("a"), queue=True), DagValidationError, "f.yaml, field 'queue': DagValidationError: expected a queue name (1-128 letters, digits, '_', '-', '.' or ':', not starting with '-'), got true (a boolean)"),
    ("dag queue with a tab", dag(t("a"), queue="a\tb"), DagValidationError, "f.yaml, field 'queue': DagValidationError: expected a queue name"),
    ("queues for queue", dag(t("a", queues="gpu")), DagValidationError, "task 'a', field 'queues': DagValidationError: unknown key (did you mean 'queue'?)"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "error", "line"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_dag_gives_one_line_naming_file_task_and_field(
    data: Any, error: type[SpecError], line: str
) -> None:
    with pytest.raises(error) as caught:
        check_dag(parse_dag(data, source="f.yaml"), "f.yaml", KNOWN)
    text = caught.value.one_line()
    assert line in text
    assert "\n" not in text


def test_param_named_like_a_non_parent_is_allowed() -> None:
    spec = parse_dag(dag(t("a"), t("b", params={"other__x": 1})), source="f.yaml")
    assert check_dag(spec, "f.yaml", KNOWN).spec.task("b").params == {"other__x": 1}


def test_defaults_and_optional_timeout() -> None:
    spec = parse_dag(dag({"id": "a", "workflow_ref": "w", "timeout_s": 3}), source="f.yaml")
    task = spec.task("a")
    assert (task.params, task.retries, task.depends_on, task.timeout_s) == ({}, 0, (), 3.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ntasks: [\n", "f.yaml:3: DagValidationError: malformed YAML"),
        ("name: x\n  bad: indent\n", "f.yaml:2: DagValidationError: malformed YAML"),
        (
            "!!python/object:os.system {}\n",
            "f.yaml:1: DagValidationError: malformed YAML: could not",
        ),
    ],
)
def test_malformed_yaml_names_the_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(DagValidationError) as caught:
        load_dag(path)
    assert caught.value.one_line().replace(str(tmp_path) + "/", "").startswith(expected)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DagValidationError, match="file not found"):
        load_dag(tmp_path / "nope.yaml")


def test_seed_dag_loads() -> None:
    loaded = load_dag(Path(__file__).resolve().parents[2] / "dags" / "weekly_ops_chain.yaml")
    assert loaded.spec.task_ids == ["sweep", "report", "brief"]
    assert loaded.spec.task("report").depends_on == ("sweep",)


FIVE_PROBLEMS = """\
name: five
tenant: t
tasks:
  - id: a
    workflow_ref: w
    retries: "2"
    depends_on: b
  - id: b
    workflow_ref: w
    params: [1]
    timeout_s: 0
"""


def test_every_field_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    # Given a DAG file with five different mistakes
    path = tmp_path / "five.yaml"
    path.write_text(FIVE_PROBLEMS)
    # When it is loaded, Then one error carries all five, each naming file, task and field
    with pytest.raises(DagValidationError) as caught:
        load_dag(path)
    lines = [line.replace(f"{tmp_path}/", "") for line in caught.value.lines()]
    assert lines == [
        "five.yaml, task 'a', field 'retries': DagValidationError: expected an integer between 0 and 100, got the string '2'",
        "five.yaml, task 'a', field 'depends_on': DagValidationError: expected a list of task ids, got the string 'b' (write [b])",
        "five.yaml, task 'b', field 'params': DagValidationError: expected a mapping of JSON values, got a list",
        "five.yaml, task 'b', field 'timeout_s': DagValidationError: expected a number of seconds greater than 0, got the number 0",
        "five.yaml, field 'tenant': DagValidationError: unknown key (did you mean 'tenant_id'?)",
    ]  # fmt: skip
    assert [e.field for e in caught.value.errors] == [
        "retries", "depends_on", "params", "timeout_s", "tenant",
    ]  # fmt: skip
    assert caught.value.one_line() == lines[0].replace("five.yaml", str(path)) + " (and 4 more)"
    assert "\n" not in str(caught.value)


def test_every_graph_problem_is_reported_with_the_cycle_last() -> None:
    data = dag(
        t("a", "b"),
        t("b", "a", params={"a__x": 1}),
        t("c", "ghost", "c"),
        {"id": "d", "workflow_ref": "nope"},
    )
    with pytest.raises(DagValidationError) as caught:
        check_dag(parse_dag(data, source="f.yaml"), "f.yaml", KNOWN)
    errors = caught.value.errors
    assert [(type(e), e.task, e.field) for e in errors] == [
        (DagValidationError, "b", "params.a__x"),
        (DagValidationError, "c", "depends_on"),
        (DagValidationError, "c", "depends_on"),
        (UnknownWorkflowError, "d", "workflow_ref"),
        (CycleDetectedError, None, None),
    ]
    assert errors[-1].message == "Cycle detected in DAG 'my_dag': a -> b -> a"


def test_duplicate_ids_are_reported_with_the_other_graph_problems() -> None:
    data = dag(t("a"), t("a"), t("b", "ghost"), t("b"))
    with pytest.raises(DagValidationError) as caught:
        check_dag(parse_dag(data, source="f.yaml"), "f.yaml", KNOWN)
    assert [(e.task, e.message) for e in caught.value.errors] == [
        ("a", "duplicate task id (also task #1)"),
        ("b", "duplicate task id (also task #3)"),
        ("b", "depends on unknown task 'ghost'"),
    ]


def test_one_problem_is_raised_as_itself() -> None:
    with pytest.raises(CycleDetectedError) as caught:
        check_dag(parse_dag(dag(t("a", "b"), t("b", "a")), source="f.yaml"), "f.yaml", KNOWN)
    assert caught.value.errors == (caught.value,)
    assert caught.value.lines() == [caught.value.one_line()]


def test_the_field_table_names_every_field_of_the_models() -> None:
    # Unknown-key suggestions and expected types come from FIELDS: it must not fall behind.
    names = set(DagSpec.model_fields) | {f"tasks[].{name}" for name in TaskSpec.model_fields}
    assert names <= set(FIELDS)


@pytest.mark.parametrize("name", ["gpu", "celery", "a.b-c_d:e", "Q9", "_x", "q" * 128])
def test_a_queue_name_of_the_documented_characters_is_accepted(name: str) -> None:
    assert parse_dag(dag(t("a", queue=name))).task("a").queue == name


def test_a_task_takes_its_own_queue_else_the_dags_else_the_default_route() -> None:
    # Given a DAG-level default queue, one task that overrides it and one that does not
    spec = parse_dag(dag(t("a"), t("b", "a", queue="gpu"), queue="io"))
    # Then each task's queue is its own, else the DAG's
    assert spec.queues == {"a": "io", "b": "gpu"}
    # And without either, no task has a queue (the default route)
    assert parse_dag(dag(t("a"), t("b", "a", queue="gpu"))).queues == {"b": "gpu"}
    assert parse_dag(dag(t("a"))).queues == {}


def test_the_compiled_plan_carries_each_tasks_queue() -> None:
    spec = parse_dag(dag(t("a"), t("b", "a", queue="gpu"), t("c", "a"), queue="io"))
    plan = check_dag(spec, "f.yaml", KNOWN).compiled.plan()
    assert {tid: task.queue for tid, task in plan.tasks.items()} == {
        "a": "io",
        "b": "gpu",
        "c": "io",
    }
