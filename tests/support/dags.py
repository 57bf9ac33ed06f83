"""Build DAGs in tests from plain dicts, as a YAML file would give them."""

from __future__ import annotations

from typing import Any

from dagflow import workflows
from dagflow.dag.load import Dag, check_dag
from dagflow.dag.spec import parse_dag


def make_dag(
    tasks: list[dict[str, Any]], name: str = "test_dag", tenant: str = "t1", **fields: Any
) -> Dag:
    """Validate and compile a DAG made of ``tasks`` (test workflows are registered first);
    ``fields`` are more top-level fields (``max_active_runs``, ``params``)."""
    workflows.load(("tests.support.workflows",))
    data = {"name": name, "tenant_id": tenant, "tasks": tasks, **fields}
    spec = parse_dag(data, source=f"{name}.yaml")
    return check_dag(spec, f"{name}.yaml")


def task(
    task_id: str, workflow: str = "test.echo", deps: tuple[str, ...] = (), **kw: Any
) -> dict[str, Any]:
    """One task entry."""
    return {"id": task_id, "workflow_ref": workflow, "depends_on": list(deps), **kw}
