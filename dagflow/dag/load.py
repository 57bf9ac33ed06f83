"""A loaded, validated DAG and its dry-run plan: what ``dagflow plan`` and ``run`` start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagflow import workflows
from dagflow.dag.alerts import alert_lines, unknown_hooks
from dagflow.dag.budget import secret_problems
from dagflow.dag.compile import CompiledDag, compile_dag, describe
from dagflow.dag.graph import build_graph
from dagflow.dag.rules import DEFAULT_RULE
from dagflow.dag.spec import DagSpec, check_pools, parse_dag, read_yaml
from dagflow.errors import DagValidationError, SpecError
from dagflow.settings import Settings


@dataclass(frozen=True)
class Dag:
    """A DAG that passed every check: its source file, spec and compiled form."""

    source: str
    spec: DagSpec
    compiled: CompiledDag

    @property
    def name(self) -> str:
        """The DAG's ``name``."""
        return self.spec.name


def check_dag(spec: DagSpec, source: str, known_workflows: list[str] | None = None) -> Dag:
    """Run the graph checks on a field-checked spec and compile it.

    Args:
        spec: The DAG.
        source: File name for error messages.
        known_workflows: Registered names; the registry's current names if None.
    """
    names = workflows.names() if known_workflows is None else known_workflows
    hooks = unknown_hooks(spec.alerts, names, source=source)
    try:
        graph = build_graph(spec, source=source, workflows=names)
    except SpecError as exc:
        raise DagValidationError.collect([exc, *hooks]) from None
    problems = [*hooks, *secret_problems(spec, source)]
    if problems:
        raise DagValidationError.collect(problems)
    return Dag(source=source, spec=spec, compiled=compile_dag(spec, graph))


def load_dag(path: str | Path, settings: Settings | None = None) -> Dag:
    """Load, validate and compile the DAG file at ``path``.

    Workflows are loaded first (built-ins, ``DAGFLOW_WORKFLOWS``, entry points) so every
    ``workflow_ref`` is checked against the registry.

    Raises:
        SpecError: The file breaks rules; ``errors`` holds every problem, each naming file,
            task and field.
    """
    return dag_from_data(read_yaml(Path(path)), str(path), settings)


def dag_from_data(data: Any, source: str, settings: Settings | None = None) -> Dag:
    """Validate and compile already-read YAML ``data`` of the DAG file ``source``.

    Raises:
        SpecError: As :func:`load_dag`.
    """
    settings = settings or Settings.from_env()
    workflows.load(settings.workflow_modules)
    spec = parse_dag(data, source=source)
    check_pools(spec, source, dict(settings.pools))
    return check_dag(spec, source)


def plan_text(dag: Dag) -> str:
    """The dry-run block, then the Celery canvas and the critical path."""
    spec, graph = dag.spec, dag.compiled.graph
    lines = [
        f"DRY RUN: DAG '{spec.name}'",
        f"Tenant: {spec.tenant_id}",
        f"Tasks: {len(spec.tasks)}",
        *alert_lines(spec.alerts),
        "",
        "Execution Plan:",
    ]
    by_id = {t.id: t for t in spec.tasks}
    for number, task_id in enumerate(graph.order, start=1):
        task = by_id[task_id]
        deps = ", ".join(graph.parents[task_id]) or "none"
        extra = ""  # only what differs from the default, so plain DAGs print as before
        if task.trigger_rule != DEFAULT_RULE:
            extra += f", trigger_rule: {task.trigger_rule}"
        if task.branch:
            extra += f", branch: chooses among {', '.join(graph.children[task_id])}"
        queue = task.queue or spec.queue
        if queue:
            extra += f", queue: {queue}"
        if task.max_parallel is not None:
            extra += f", max_parallel: {task.max_parallel}"
        name = f"{task_id}[*]  (map over {task.map}) " if task.map else f"{task_id} "
        if task.pool:
            extra += f", pool: {task.pool}"
        lines.append(
            f"  {number}. {name}(workflow: {task.workflow_ref}, depends_on: {deps}{extra})"
        )
    lines.append("")
    lines += describe(dag.compiled)
    path = graph.critical_path()
    lines += ["", f"Critical path ({len(path)} tasks): {' -> '.join(path)}"]
    return "\n".join(lines)
