"""One attempt of one step, as its claim granted it (:class:`Attempt`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagflow.dag.plan import RunPlan, TaskPlan
from dagflow.events.log import Event
from dagflow.execution.runtime import Runtime
from dagflow.execution.secrets import NO_SECRETS, Redactor

if TYPE_CHECKING:
    from celery import Celery


@dataclass(frozen=True)
class Attempt:
    """One attempt of one step, as its claim granted it: what every stage after the claim
    needs, in one value.

    Attributes:
        app: The Celery app the step runs on (children and retries are sent through it).
        rt: The app's runtime.
        plan: The run's plan.
        run_id: The run.
        task_id: The task.
        number: The attempt's number (1 for the first).
        fence: The lease's fencing number: the store refuses this attempt's end once
            another delivery holds a larger one.
        worker: The worker's node name, or None.
        redactor: Masks the secrets resolved for this attempt in what it stores (its
            output, error and traceback); set once they are resolved.
    """

    app: Celery
    rt: Runtime
    plan: RunPlan
    run_id: str
    task_id: str
    number: int
    fence: int
    worker: str | None
    redactor: Redactor = NO_SECRETS

    @property
    def spec(self) -> TaskPlan:
        """The task's plan (its mapped task's, for an instance)."""
        return self.plan.task(self.task_id)

    def fields(self) -> dict[str, Any]:
        """The fields every event of this attempt carries."""
        return {
            "task_id": self.task_id,
            "workflow_ref": self.spec.workflow_ref,
            "attempt": self.number,
            "worker": self.worker,
            "fence": self.fence,
        }

    def event(self, name: str, **more: Any) -> Event:
        """One event of this attempt (built, not written)."""
        return self.rt.event(name, self.run_id, self.plan, **self.fields(), **more)
