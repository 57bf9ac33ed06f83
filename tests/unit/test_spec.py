"""DAG file loading and validation: one table of bad inputs and the one line each gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dagflow.dag import check_dag, load_dag
from dagflow.errors import CycleDetectedError, DagValidationError, SpecError, UnknownWorkflowError
from dagflow.spec import parse_dag

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
    ("unknown task key", dag(t("a", retry=3)), DagValidationError, "f.yaml, task 'a', field 'retry': DagValidationError: unknown key"),
    ("retries as string", dag(t("a", retries="2")), DagValidationError, "task 'a', field 'retries': DagValidationError: Input should be a valid integer"),
    ("negative retries", dag(t("a", retries=-1)), DagValidationError, "task 'a', field 'retries'"),
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
