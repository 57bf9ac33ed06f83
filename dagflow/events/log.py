"""Run events and the JSONL event log they are written to.

Events are the record of what happened: the dashboard and analytics derive every number
from them, so there is no second copy of run history that could drift. The log lives at
``ORCH_EVENTS_PATH`` (default ``logs/orchestrator_events.jsonl``), one JSON object per line::

    {"timestamp":"2026-11-26T10:00:00.000000Z","event":"task_ok","run_id":"...","dag_name":"weekly_ops_chain",
     "tenant_id":"local-dev","task_id":"sweep","workflow_ref":"inbox_drive_sweep","attempt":1,"duration_s":0.0012}

Writing an event never fails or loses a task: an ``OSError`` is logged and swallowed.
Reading the log for analytics is :func:`load_events` (its newest lines) or :func:`iter_events`
(all of it, streamed); both skip and count torn or corrupt lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from dagflow.events.jsonl import AppendFile, ReadStats, iter_records, read_tail

logger = logging.getLogger(__name__)

EventName = Literal[
    "dag_start",
    "task_start",
    "task_ok",
    "task_fail",
    "task_retry",
    "task_skip",
    "task_lease_lost",
    "task_cancel",
    "task_reused",
    "map_expand",
    "map_done",
    "dag_done",
    "dag_deadline_missed",
    "notification_sent",
    "notification_failed",
    "hook_failed",
]


class Event(BaseModel):
    """One line of the event log. Fields that do not apply to an event are left out.

    Attributes:
        timestamp: ISO 8601 UTC time the event happened.
        event: One of :data:`EventName`.
        run_id: The run this event belongs to.
        dag_name: The DAG's ``name``.
        tenant_id: The DAG's ``tenant_id``.
        task_id: The task, for ``task_*`` events.
        workflow_ref: The task's workflow, for ``task_*`` events.
        attempt: 1-based attempt number, for ``task_start``, ``task_ok``, ``task_fail`` and
            ``task_retry``.
        duration_s: Seconds the attempt (``task_ok``, ``task_fail``, ``task_retry``) or the run
            (``dag_done``) took.
        delay_s: Seconds until the next attempt, for ``task_retry``.
        error: ``ErrorName: message`` of a failed attempt, why a task was skipped, why an
            attempt's result was discarded (``task_lease_lost``) or why a run stalled.
        traceback: For ``task_fail`` and ``task_retry``: the workflow's own frames of the
            failed attempt (dagflow's and Celery's trimmed away; at most 20 frames and 4 kB,
            see :mod:`dagflow.execution.tracebacks`); absent when the error was dagflow's own.
        worker: The Celery node name of the worker that ran the attempt.
        fence: The attempt's lease fencing number (grows with each new holder of the step).
        status: ``success``, ``failed`` or ``cancelled``, for ``dag_done``.
        tasks: How many tasks the DAG has, for ``dag_start`` and ``dag_done``.
        tasks_succeeded: Tasks that succeeded, for ``dag_done``.
        tasks_failed: Tasks that failed after their last attempt, for ``dag_done``.
        tasks_skipped: Tasks not started because an upstream task failed, for ``dag_done``.
        tasks_cancelled: Tasks ended by ``dagflow cancel`` (never started, or interrupted),
            for ``dag_done``.
        edges: ``[parent, child]`` pairs, for ``dag_start`` of DAGs with up to 1,000 edges.
        params: The run-level params, for ``dag_start`` (when the run has any).
        retry_of: For ``dag_start`` of a run made by ``dagflow retry``: the run it retries.
        reused_from: For ``task_reused``: the run whose output the task took over (its
            workflow did not run in this run).
        instances: For ``map_expand``: how many instances a mapped task runs as (its
            ``map_done`` follows when the last one ends; ``status`` is ``success`` or
            ``failed``, with the ``error`` of a failed one).
        kind: For ``notification_sent``, ``notification_failed`` and ``hook_failed``:
            ``on_failure``, ``on_success``, ``on_deadline_missed`` (a hook) or ``webhook``.
        target: For the same events: the hook's workflow, or the webhook's environment
            variable (never its URL).
        trigger: For the same events: what is told, ``failed``, ``success`` or
            ``deadline_missed``.
        will_retry: For ``notification_failed`` and ``hook_failed``: another attempt is due
            (False: this was the last one).
        deadline_s: For ``dag_deadline_missed``: the deadline the run missed, in seconds
            after its start (or after its scheduled minute).
        queue: For ``task_start``: the queue the step's message came through.
        queued_s: For ``task_start``: seconds from the step's message being sent (it became
            ready, or its retry fell due) to this claim, by the sender's and the worker's
            clocks (absent when the message carries no send time: an older sender).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timestamp: str
    event: EventName
    run_id: str
    dag_name: str
    tenant_id: str
    task_id: str | None = None
    workflow_ref: str | None = None
    attempt: int | None = None
    duration_s: float | None = None
    delay_s: float | None = None
    error: str | None = None
    traceback: str | None = None
    worker: str | None = None
    fence: int | None = None
    status: Literal["success", "failed", "cancelled"] | None = None
    tasks: int | None = None
    tasks_succeeded: int | None = None
    tasks_failed: int | None = None
    tasks_skipped: int | None = None
    tasks_cancelled: int | None = None
    edges: list[list[str]] | None = None
    params: dict[str, Any] | None = None
    retry_of: str | None = None
    reused_from: str | None = None
    instances: int | None = None
    kind: str | None = None
    target: str | None = None
    trigger: str | None = None
    will_retry: bool | None = None
    deadline_s: float | None = None
    queue: str | None = None
    queued_s: float | None = None

    def to_record(self) -> dict[str, Any]:
        """Return the event as the dict written to the log (no null fields)."""
        return self.model_dump(exclude_none=True)


class JsonlEventLog:
    """The event log: a JSONL file safe for many writer processes.

    Args:
        path: The file to append to; its folder is created on first write.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = AppendFile(self.path)

    def emit(self, event: Event) -> bool:
        """Append ``event``. Returns False (and logs a warning) if it could not be written."""
        try:
            self._file.append(event.to_record())
        except OSError as exc:
            logger.warning(
                "dagflow: could not write event %s to %s: %s", event.event, self.path, exc
            )
            return False
        return True

    def read(self, stats: ReadStats | None = None) -> list[dict[str, Any]]:
        """Return every event in the log (skipping corrupt lines, counted in ``stats``)."""
        return list(iter_records(self.path, stats))


def iter_events(path: str | Path, stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Stream every event in the log at ``path``; torn or corrupt lines are counted in ``stats``."""
    return iter_records(Path(path), stats)


def load_events(
    path: str | Path, limit: int = 5000, stats: ReadStats | None = None
) -> list[dict[str, Any]]:
    """Return the last ``limit`` events of the log at ``path``, oldest first.

    Only the tail of the file is read (see :func:`dagflow.events.jsonl.read_tail`), so the cost and
    the memory follow ``limit``, not the log's size. A missing file gives an empty list.

    Args:
        path: The JSONL event log.
        limit: How many of the newest events to keep.
        stats: Filled with the lines read (from the tail) and the corrupt lines skipped.
    """
    return read_tail(Path(path), limit, stats)
