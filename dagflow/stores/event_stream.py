"""Events across hosts: every event and scheduler state line goes through one Redis stream.

Workers on several hosts share Redis and nothing else, so in distributed mode
(``DAGFLOW_EVENTS=stream``, the default with a broker) no process writes a local file: each
appends its run events and the scheduler's state lines (``schedule_enqueued``,
``run_started``, ``run_finished``) to the stream ``dagflow:events``. A task's end is appended
inside the same Lua script that commits it (:mod:`dagflow.stores.redis_scripts`), so the log
and the run store cannot disagree about it, and its ``task_start`` inside the claim script
that gives it its lease. The collector (:mod:`dagflow.events.collector`) writes
the one JSONL log in the seed's format.

Each entry has two fields: ``log`` (``events`` or ``state``) and ``data`` (the JSON line).
The stream is capped at ``DAGFLOW_EVENTS_MAXLEN`` entries (approximately: ``XADD MAXLEN ~``),
so Redis memory stays bounded (about 400 bytes per entry): if no collector runs for that
many events, the oldest are dropped without ever reaching the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis

from dagflow.clock import now_iso
from dagflow.events.jsonl import ReadStats
from dagflow.events.log import Event
from dagflow.keys import EVENTS_STREAM
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.stores.transport import BACKEND_ERRORS

logger = logging.getLogger(__name__)

#: Default cap on the stream, in entries.
DEFAULT_MAXLEN = 200_000
#: Entries read per XRANGE call when reading the whole stream.
PAGE = 5_000
EVENTS_LOG, STATE_LOG = "events", "state"


def encode(record: Mapping[str, Any]) -> str:
    """One log line's JSON (no newline), as the collector writes it."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class RedisEventStream:
    """Appends events and state lines to the stream; reads them back for tools and tests.

    It is both an event sink (:meth:`emit`) and the scheduler's state recorder
    (:meth:`record_event`, :meth:`record_events`), so every writer in distributed mode
    uses one object. Writing never raises: a lost event is logged, never a failed task.

    Args:
        url: The Redis that holds run state (the stream lives next to it).
        maxlen: Approximate cap on the stream's length.
        master_name: The Sentinel primary's name, for a ``sentinel://`` URL.
    """

    def __init__(
        self, url: str, maxlen: int = DEFAULT_MAXLEN, *, master_name: str = DEFAULT_MASTER_NAME
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.client: redis.Redis = redis_client(url, master_name=master_name, decode_responses=True)

    def _add(self, log: str, records: Sequence[Mapping[str, Any]]) -> bool:
        try:
            pipe = self.client.pipeline(transaction=False)
            for record in records:
                fields: dict[str, str] = {"log": log, "data": encode(record)}
                pipe.xadd(EVENTS_STREAM, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.execute()
        except BACKEND_ERRORS as exc:
            logger.warning("dagflow: could not append %d %s lines: %s", len(records), log, exc)
            return False
        return True

    def emit(self, event: Event) -> bool:
        """Append a run event; False (logged) if Redis could not be reached."""
        return self._add(EVENTS_LOG, [event.to_record()])

    def record_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append a scheduler state line (with a ``timestamp`` if it has none)."""
        record = dict(event)
        record.setdefault("timestamp", now_iso())
        self._add(STATE_LOG, [record])
        return record

    def record_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append many state lines in one round trip."""
        now = now_iso()
        if events:
            self._add(STATE_LOG, [{"timestamp": now, **e} for e in events])

    def entries(self, start: str = "-") -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Yield ``(entry id, log, record)`` from ``start`` to the end, in stream order."""
        cursor = start
        while True:
            batch: list[tuple[str, dict[str, str]]] = self.client.xrange(  # type: ignore[assignment]
                EVENTS_STREAM, min=cursor, max="+", count=PAGE
            )
            for entry_id, fields in batch:
                yield entry_id, fields.get("log", EVENTS_LOG), json.loads(fields["data"])
            if len(batch) < PAGE:
                return
            cursor = "(" + batch[-1][0]

    def follow(
        self, after: str, block_ms: int, count: int = 1000
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """``(entry id, log, record)`` of the entries after ``after`` (an entry id, or
        ``<ms>-0``), waiting up to ``block_ms`` for the first one (``XREAD BLOCK``)."""
        reply: list[tuple[str, list[tuple[str, dict[str, str]]]]] = self.client.xread(  # type: ignore[assignment]
            {EVENTS_STREAM: after}, count=count, block=block_ms
        )
        return [
            (entry_id, fields.get("log", EVENTS_LOG), json.loads(fields["data"]))
            for _, entries in reply or []
            for entry_id, fields in entries
        ]

    def read(
        self, stats: ReadStats | None = None, *, log: str = EVENTS_LOG
    ) -> list[dict[str, Any]]:
        """Every record of ``log`` still in the stream, oldest first.

        Args:
            stats: Counts the entries read (a stream has no torn lines to skip).
            log: ``events`` or ``state``.
        """
        records = [record for _, kind, record in self.entries() if kind == log]
        if stats is not None:
            stats.lines += len(records)
        return records
