"""What a workflow may know about the run it runs in: :class:`RunContext` (pure).

A workflow that takes a second positional argument is given one (the registry inspects its
signature once, when it is registered); a one-argument workflow is called as before::

    @dagflow.workflow("export")
    def export(params, ctx):
        key = f"{ctx.run_id}/{ctx.task_id}/{ctx.fence}"   # idempotency key of this attempt
        return {"day": ctx.params.get("day"), "scheduled": ctx.scheduled_minute}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """The run around one attempt of a task.

    Attributes:
        run_id: The run's id.
        dag_name: The DAG's ``name``.
        tenant_id: The run's tenant (a schedule's ``tenant`` for scheduled runs).
        task_id: The task this attempt runs.
        attempt: 1-based attempt number.
        fence: The attempt's lease fencing number: unique per attempt and growing, so
            ``(run_id, task_id, fence)`` is an idempotency key for side effects.
        params: The run-level params (``params:`` defaults of the DAG file, overridden by
            ``dagflow run --param`` or a schedule's ``params:``), read-only.
        schedule_id: For a scheduled run: the schedule's ``id``; else None.
        scheduled_minute: For a scheduled run: the UTC minute it was due
            (``2026-11-26T10:05:00Z``); else None.
        retry_of: For a run made by ``dagflow retry``: the run it retries; else None.
        map_index: For an instance of a mapped task (``task_id`` is ``process[3]``): its
            0-based index, the position of its ``item`` in the list; else None.
    """

    run_id: str
    dag_name: str
    tenant_id: str
    task_id: str
    attempt: int
    fence: int
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule_id: str | None = None
    scheduled_minute: str | None = None
    retry_of: str | None = None
    map_index: int | None = None

    @classmethod
    def build(
        cls,
        run_id: str,
        task_id: str,
        attempt: int,
        fence: int,
        *,
        dag_name: str,
        tenant_id: str,
        params: Mapping[str, Any],
        labels: Mapping[str, str],
        map_index: int | None = None,
    ) -> RunContext:
        """A context from the stored plan's run-level ``params`` and ``labels``."""
        return cls(
            run_id=run_id,
            dag_name=dag_name,
            tenant_id=tenant_id,
            task_id=task_id,
            attempt=attempt,
            fence=fence,
            params=MappingProxyType(dict(params)),
            schedule_id=labels.get("schedule_id") or None,
            scheduled_minute=labels.get("scheduled_minute") or None,
            retry_of=labels.get("retry_of") or None,
            map_index=map_index,
        )
