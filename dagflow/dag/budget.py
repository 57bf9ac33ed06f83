"""What a run may put in Redis: the checks on a DAG's inline params and secret refs (pure).

The whole per-run budget (plan, params, outputs, errors, events) is a table in the README
(*Budgets*). The parts decided from the DAG file and the run's params live here:

* a task's ``params`` and the run-level params are stored inline: in the plan (once per
  run), in the run's meta and in ``dag_start`` (run-level ones), and in every worker's plan
  cache. Above :data:`PARAMS_WARN_BYTES` of JSON in all, ``dagflow plan`` and ``dagflow run``
  print a warning; above :data:`PARAMS_MAX_BYTES` a run is refused (one line, exit 2). Large
  inputs belong in a file or an object store, passed by name or URL, or in a parent's
  output (kept by reference above ``DAGFLOW_OUTPUT_INLINE_MAX``);
* a ``{secret: NAME}`` reference must name a valid secret (:mod:`dagflow.dag.secret_refs`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dagflow.dag.secret_refs import bad_refs
from dagflow.dag.spec import DagSpec
from dagflow.errors import DagValidationError

#: Bytes of inline params (JSON) over which ``dagflow plan`` and ``dagflow run`` warn.
PARAMS_WARN_BYTES = 64 * 1024
#: Bytes of inline params (JSON) over which a run is refused.
PARAMS_MAX_BYTES = 1024 * 1024


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def params_bytes(spec: DagSpec, run_params: Mapping[str, Any] | None = None) -> int:
    """Bytes of JSON of every task's ``params`` plus the run-level params (the DAG's
    defaults when ``run_params`` is None)."""
    run = spec.params if run_params is None else run_params
    return sum(_size(t.params) for t in spec.tasks) + (_size(dict(run)) if run else 0)


def params_warning(spec: DagSpec, run_params: Mapping[str, Any] | None = None) -> str | None:
    """A warning line when the inline params are large, else None."""
    size = params_bytes(spec, run_params)
    if size <= PARAMS_WARN_BYTES:
        return None
    largest = max(spec.tasks, key=lambda t: _size(t.params))
    return (
        f"DAG '{spec.name}' has {size} bytes of inline params (over {PARAMS_WARN_BYTES}; "
        f"largest: task '{largest.id}', {_size(largest.params)} bytes): each run stores them "
        "in Redis with its plan; pass large inputs by reference (a file, a URL, a parent's "
        f"output); runs over {PARAMS_MAX_BYTES} bytes are refused"
    )


def check_params_size(spec: DagSpec, run_params: Mapping[str, Any], source: str) -> None:
    """Refuse a run whose inline params are over :data:`PARAMS_MAX_BYTES`.

    Raises:
        DagValidationError: Naming the file, the size and the limit.
    """
    size = params_bytes(spec, run_params)
    if size > PARAMS_MAX_BYTES:
        raise DagValidationError(
            f"{size} bytes of inline params (tasks' params and run-level params), over "
            f"{PARAMS_MAX_BYTES}: pass large inputs by reference (a file, a URL, a parent's "
            "output)",
            file=source,
            field="params",
        )


def secret_problems(spec: DagSpec, source: str) -> list[DagValidationError]:
    """One error per malformed ``{secret: NAME}`` in the tasks' and the DAG's params."""
    found = [
        DagValidationError(why, file=source, task=t.id, field=f"params.{path}")
        for t in spec.tasks
        for path, why in bad_refs(t.params)
    ]
    found += [
        DagValidationError(why, file=source, field=f"params.{path}")
        for path, why in bad_refs(spec.params)
    ]
    return found


def check_run_params(given: Mapping[str, Any], source: str) -> None:
    """Refuse run-level params with a malformed ``{secret: NAME}``.

    Raises:
        DagValidationError: One per problem, naming the file and ``params.KEY``.
    """
    problems = [
        DagValidationError(why, file=source, field=f"params.{path}")
        for path, why in bad_refs(dict(given))
    ]
    if problems:
        raise DagValidationError.collect(problems)
