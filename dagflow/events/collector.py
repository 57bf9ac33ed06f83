"""The collector: writes the one JSONL event log (and state store) from the event stream.

``dagflow events collect`` reads ``dagflow:events`` through the consumer group
``collectors``, appends each batch to ``ORCH_EVENTS_PATH`` (run events) and
``STATE_STORE_PATH`` (scheduler lines) in the seed's format, and acknowledges the batch only
after the write. So:

* a collector killed at any moment loses nothing: what it read but did not acknowledge stays
  pending and is read again when it (or another collector) comes back;
* nothing is written twice: every line carries ``event_id`` (the stream entry's id), and a
  collector skips ids it finds among the newest lines of the files before writing;
* two collectors may run for availability: the group hands each entry to one of them, and
  a collector takes over the pending entries of one that stopped (``XAUTOCLAIM`` after
  :data:`CLAIM_IDLE_MS`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from dagflow.events.jsonl import append_records, read_tail
from dagflow.keys import COLLECTOR_GROUP, EVENTS_STREAM
from dagflow.stores.transport import BACKEND_ERRORS

logger = logging.getLogger(__name__)

#: Entries read per call, and how long one read blocks waiting for new ones (ms).
BATCH = 1_000
BLOCK_MS = 1_000
#: Pending entries idle this long (ms) belong to a collector that stopped: take them over.
CLAIM_IDLE_MS = 30_000
#: Seconds between two looks for unacknowledged entries (see :meth:`Collector.collect_once`).
RECOVER_S = 15.0
#: Seconds to wait after a short batch, so the next read takes more entries at once.
LINGER_S = 0.05
#: How many of the newest lines of each file are checked for ids already written.
DEDUP_WINDOW = 50_000


@dataclass(frozen=True)
class Lag:
    """How far behind the collectors are.

    Attributes:
        entries: Entries in the stream not yet written (never read, or read and unacknowledged).
        seconds: Age of the oldest of them (0 when there are none).
        stream_length: Entries the stream holds.
    """

    entries: int
    seconds: float
    stream_length: int


def collector_lag(client: redis.Redis, now_ms: int) -> Lag:
    """Read the collectors' lag from the group's state (no collector needs to run)."""
    length = int(client.xlen(EVENTS_STREAM))
    try:
        groups = client.xinfo_groups(EVENTS_STREAM)
    except redis.ResponseError:  # no stream yet
        return Lag(0, 0.0, length)
    group = next((g for g in groups if _text(g.get("name")) == COLLECTOR_GROUP), None)
    if group is None:
        oldest = client.xrange(EVENTS_STREAM, count=1)
        return Lag(length, _age(oldest[0][0], now_ms) if oldest else 0.0, length)
    pending = int(group.get("pending") or 0)
    behind = int(group.get("lag") or 0)
    oldest_id: Any = None
    if pending:
        summary = client.xpending(EVENTS_STREAM, COLLECTOR_GROUP)
        oldest_id = summary.get("min")
    elif behind:
        after = client.xrange(EVENTS_STREAM, min=f"({_text(group['last-delivered-id'])}", count=1)
        oldest_id = after[0][0] if after else None
    seconds = _age(oldest_id, now_ms) if oldest_id else 0.0
    return Lag(pending + behind, seconds, length)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _age(entry_id: Any, now_ms: int) -> float:
    return max(now_ms - int(_text(entry_id).split("-")[0]), 0) / 1000


class Collector:
    """One collector process (see the module docstring).

    Args:
        client: A redis-py client on the Redis that holds the stream (``decode_responses``).
        events_path: ``ORCH_EVENTS_PATH``.
        state_path: ``STATE_STORE_PATH``.
        name: This consumer's name in the group (host and pid by default).
        claim_idle_ms: Take over another consumer's entries pending this long.
    """

    def __init__(
        self,
        client: redis.Redis,
        events_path: Path,
        state_path: Path,
        name: str | None = None,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.client = client
        self.paths = {"events": Path(events_path), "state": Path(state_path)}
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self._recover_at = 0.0  # look for unacknowledged entries on the first batch
        self.written = 0
        self.skipped = 0
        self._seen: deque[str] = deque(maxlen=DEDUP_WINDOW)
        self._seen_set: set[str] = set()

    def setup(self) -> None:
        """Create the group (from the stream's start) if it does not exist yet."""
        try:
            self.client.xgroup_create(EVENTS_STREAM, COLLECTOR_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._load_seen()

    def _load_seen(self) -> None:
        """Remember the ids among the newest lines of both files."""
        self._seen.clear()
        self._seen_set.clear()
        for path in self.paths.values():
            for record in read_tail(path, DEDUP_WINDOW):
                event_id = record.get("event_id")
                if isinstance(event_id, str):
                    self._remember(event_id)

    def _remember(self, event_id: str) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(event_id)
        self._seen_set.add(event_id)

    def collect_once(self, block_ms: int = BLOCK_MS) -> int:
        """Write one batch; returns how many entries it handled (written or skipped).

        Entries left unacknowledged (this consumer's, read before a crash, and those of a
        collector that stopped) are looked for at start, after an error and every
        :data:`RECOVER_S`, not on every batch: each look costs two commands per wake-up.
        After a short batch it pauses :data:`LINGER_S`, so a busy stream is read in batches
        rather than one entry per wake-up.
        """
        entries: list[tuple[str, dict[str, str]]] = []
        if time.monotonic() >= self._recover_at:
            entries = self._read("0", 0)  # mine, read before a crash and never acknowledged
            if not entries:
                entries = self._autoclaim()
            if entries:
                self._load_seen()  # another process may have written some of them
            else:
                self._recover_at = time.monotonic() + RECOVER_S
        if not entries:
            entries = self._read(">", block_ms)
            if 0 < len(entries) < BATCH:
                time.sleep(LINGER_S)
        return self._write(entries)

    def _read(self, start: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.client.xreadgroup(
            COLLECTOR_GROUP,
            self.name,
            {EVENTS_STREAM: start},
            count=BATCH,
            block=block_ms if start == ">" else None,
        )
        if not reply:
            return []
        _, entries = reply[0]
        # A pending entry trimmed from the stream comes back with no fields: skip it.
        return [(str(entry_id), fields) for entry_id, fields in entries if fields]

    def _autoclaim(self) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.client.xautoclaim(
            EVENTS_STREAM, COLLECTOR_GROUP, self.name, self.claim_idle_ms, "0-0", count=BATCH
        )
        entries = reply[1] if len(reply) > 1 else []
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _write(self, entries: Iterable[tuple[str, dict[str, str]]]) -> int:
        batches: dict[str, list[dict[str, Any]]] = {"events": [], "state": []}
        ids = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if entry_id in self._seen_set:
                self.skipped += 1
                continue
            record = json.loads(fields["data"])
            record["event_id"] = entry_id
            batches.get(fields.get("log", "events"), batches["events"]).append(record)
        for log, records in batches.items():
            if records:
                append_records(self.paths[log], records)  # OSError: nothing is acknowledged
                for record in records:
                    self._remember(record["event_id"])
                self.written += len(records)
        if ids:
            self.client.xack(EVENTS_STREAM, COLLECTOR_GROUP, *ids)
        return len(ids)

    def run(self, stop: threading.Event) -> None:
        """Collect until ``stop`` is set; a Redis or disk error is logged and retried."""
        self.setup()
        while not stop.is_set():
            try:
                self.collect_once()
            except BACKEND_ERRORS as exc:
                logger.warning("dagflow: collector: %s; retrying in 1 s", exc)
                self._recover_at = 0.0
                stop.wait(1.0)
