"""Payload passing: upstream outputs reach direct dependents under namespaced keys.

If task ``sweep`` returns ``{"summary": "Prioritized 15 items"}``, every task that lists
``sweep`` in ``depends_on`` receives ``sweep__summary``. A non-dict output arrives as
``sweep__result``. A task's own params are never overwritten (``dagflow validate`` refuses
a param named like ``<upstream>__<key>``), and only *direct* parents are passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagflow.dag.spec import NAMESPACE_SEP

#: Key suffix for an upstream output that is not a mapping.
RESULT_KEY = "result"


def namespaced(task_id: str, output: Any) -> dict[str, Any]:
    """Return ``output`` as the keys a dependent sees (``task_id__key``)."""
    if isinstance(output, Mapping):
        return {f"{task_id}{NAMESPACE_SEP}{key}": value for key, value in output.items()}
    return {f"{task_id}{NAMESPACE_SEP}{RESULT_KEY}": output}


def merge_params(params: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a task's own ``params`` with its parents' outputs (``{parent_id: output}``).

    The task's own params win over any namespaced key, so user input is never overwritten.
    """
    merged: dict[str, Any] = {}
    for parent in sorted(upstream):
        merged.update(namespaced(parent, upstream[parent]))
    merged.update(params)
    return merged
