"""dagflow: YAML DAG workflows compiled to Celery, with retries, events and schedules.

The public API, by concept::

    import dagflow

    dag = dagflow.load_dag("dags/weekly_ops_chain.yaml")   # spec + graph, validated
    print(dagflow.plan_text(dag))                           # the dry-run plan
    result = dagflow.run(dag)                               # embedded or on workers
    handle = dagflow.submit(dag); handle.wait()             # start now, wait later
    dagflow.get_run(run_id).status()                        # from any process or host
    dagflow.list_runs(tenant="acme", status="failed")       # recent runs, newest first

    @dagflow.workflow("my_step")                            # register a workflow
    def my_step(params): ...

``dagflow.app`` is the Celery app that ``celery -A dagflow worker`` uses (built lazily, so
``dagflow plan`` does not pay for importing Celery).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagflow import _moved
from dagflow.errors import (
    ConfigError,
    CycleDetectedError,
    DagflowError,
    DagValidationError,
    RunnerError,
    ScheduleError,
    SpecError,
    StoreUnavailable,
    UnknownWorkflowError,
    UnreachableError,
)
from dagflow.workflows import workflow

if TYPE_CHECKING:
    from celery import Celery

_moved.install()

__all__ = [
    # errors
    "ConfigError",
    "CycleDetectedError",
    "DagValidationError",
    "DagflowError",
    "RunContext",  # what a workflow's second argument is
    "RunnerError",
    "ScheduleError",
    "SpecError",
    "StoreUnavailable",
    "UnknownWorkflowError",
    "UnreachableError",
    # the Celery app
    "app",
    # run control
    "get_run",
    "list_runs",
    # DAGs
    "load_dag",
    "plan_text",
    # running
    "run",
    "submit",
    # workflows
    "workflow",
]

_LAZY = {
    "load_dag": ("dagflow.dag.load", "load_dag"),
    "plan_text": ("dagflow.dag.load", "plan_text"),
    "run": ("dagflow.client.runner", "run"),
    "submit": ("dagflow.client.runner", "submit"),
    "get_run": ("dagflow.client.runner", "get_run"),
    "list_runs": ("dagflow.client.runner", "list_runs"),
    "RunContext": ("dagflow.workflows.context", "RunContext"),
}
_app: Celery | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name in ("app", "celery"):
        if _app is None:
            from dagflow.celery_app import make_app

            _app = make_app()
        return _app
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dagflow' has no attribute {name!r}")
