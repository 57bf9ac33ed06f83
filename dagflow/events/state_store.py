"""The scheduler's state store: an append-only JSONL file of scheduler events.

Path: ``STATE_STORE_PATH`` (default ``logs/orchestrator_state.jsonl``). Events are
``schedule_enqueued``, ``run_started`` and ``run_finished``, each with ``timestamp``,
``schedule_id``, ``tenant_id``, ``dag``, ``run_id``, ``scheduled_minute`` and, for
``run_finished``, ``status`` (``success``/``failed``) and ``duration_s``.

The module-level functions are the API the original product had::

    from dagflow.events.state_store import record_event, last_runs, index_by
    record_event({"event": "run_finished", "status": "success"})
    events = last_runs(limit=20)
    by_schedule = index_by("schedule_id", limit=100)

Like the event log, it is safe for many writer processes, and a torn or corrupt line is
skipped and counted (``JsonlStateStore.last_stats``), never a crash.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dagflow.clock import isoformat, utc_now
from dagflow.events.jsonl import ReadStats, append_record, append_records, iter_records
from dagflow.settings import Settings

logger = logging.getLogger(__name__)


class StateRecorder(Protocol):
    """Where the scheduler writes its state lines: the JSONL file, or the event stream."""

    def record_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append one line (a ``timestamp`` is added if missing); never raises."""

    def record_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append many lines at once; never raises."""


class JsonlStateStore:
    """An append-only JSONL state store at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.last_stats = ReadStats()

    def record_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``event``, adding an ISO 8601 UTC ``timestamp`` if it has none.

        Returns the record as written. A write failure is logged, never raised: losing a
        state line must not fail a run.
        """
        record = dict(event)
        record.setdefault("timestamp", isoformat(utc_now()))
        try:
            append_record(self.path, record)
        except OSError as exc:
            logger.warning("dagflow: could not write state event to %s: %s", self.path, exc)
        return record

    def record_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append many events (a tick's ``schedule_enqueued`` lines); see :meth:`record_event`.

        One open and one lock for the batch: a tick that enqueues thousands of runs
        must not pay one ``flock`` per line.
        """
        now = isoformat(utc_now())
        try:
            append_records(self.path, ({"timestamp": now, **e} for e in events))
        except OSError as exc:
            logger.warning("dagflow: could not write state events to %s: %s", self.path, exc)

    def last_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Return the last ``limit`` events, oldest first (bounded memory)."""
        self.last_stats = ReadStats()
        return list(deque(iter_records(self.path, self.last_stats), maxlen=max(limit, 0)))

    def index_by(self, key: str, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """Group the last ``limit`` events that have ``key`` by its value, oldest first."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for record in self.last_runs(limit):
            if key in record:
                grouped.setdefault(str(record[key]), []).append(record)
        return grouped


def default_store() -> JsonlStateStore:
    """Return the store at ``STATE_STORE_PATH`` (read from the environment on each call)."""
    return JsonlStateStore(Settings.from_env().state_path)


def record_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``event`` to the default state store. See :meth:`JsonlStateStore.record_event`."""
    return default_store().record_event(event)


def last_runs(limit: int = 20) -> list[dict[str, Any]]:
    """Return the default store's last ``limit`` events."""
    return default_store().last_runs(limit)


def index_by(key: str, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """Group the default store's last ``limit`` events by ``key``."""
    return default_store().index_by(key, limit)
