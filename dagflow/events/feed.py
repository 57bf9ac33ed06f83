"""One run's events, read back and followed live: ``GET /api/v1/runs/{id}/events``.

With the Redis stream (``DAGFLOW_EVENTS=stream``, the default with a broker) every host's
events are in ``dagflow:events``, collected or not; the feed reads them from a little before
the run started (stream entry ids are times, so it does not read the stream's older part)
and follows new entries with ``XREAD BLOCK``. Each record gets the ``event_id`` the
collector gives it (its stream entry id). Otherwise (``DAGFLOW_EVENTS=file``) it reads
``ORCH_EVENTS_PATH`` and follows what is appended to it.

A :class:`FeedPosition` says where the next read starts, so following never loses or
repeats an event written between the first read and the follow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagflow.settings import Settings
from dagflow.stores.event_stream import EVENTS_LOG, RedisEventStream

#: Seconds before the run's start time the stream is read from: a margin for clocks of
#: hosts that disagree (the run's ``started_at`` is its client's clock, entry ids Redis's).
CLOCK_SLACK_S = 300.0
#: Seconds between two looks at the log file when following it (file mode).
FILE_POLL_S = 0.25


@dataclass(frozen=True)
class FeedPosition:
    """Where a feed's next read starts: a stream entry id, or a byte offset in the log."""

    stream_id: str | None = None
    offset: int = 0


def _is_run(record: Mapping[str, Any], run_id: str) -> bool:
    return record.get("run_id") == run_id


class RunEventFeed:
    """Reads and follows one run's events (see the module docstring).

    Args:
        settings: Where events go (the stream on the run state's Redis, or the log file).
        stream: The stream to read (default: one on ``settings``' Redis, in stream mode).
    """

    def __init__(self, settings: Settings, stream: RedisEventStream | None = None) -> None:
        self.settings = settings
        if stream is None and settings.events_via_stream:
            stream = RedisEventStream(
                settings.require_redis_url(),
                settings.events_maxlen,
                master_name=settings.redis_master_name,
            )
        self.stream = stream

    def history(
        self, run_id: str, started_at: float | None
    ) -> tuple[list[dict[str, Any]], FeedPosition]:
        """The run's events so far, oldest first, and where to follow from.

        Args:
            run_id: The run.
            started_at: The run's start (epoch seconds): the stream is read from
                :data:`CLOCK_SLACK_S` before it (from its start if None).
        """
        if self.stream is None:
            return self._file_since(run_id, 0)
        since_ms = 0 if started_at is None else max(int((started_at - CLOCK_SLACK_S) * 1000), 0)
        last = f"{since_ms}-0"
        records = []
        for entry_id, log, record in self.stream.entries(start=str(since_ms)):
            last = entry_id
            if log == EVENTS_LOG and _is_run(record, run_id):
                records.append({**record, "event_id": entry_id})
        return records, FeedPosition(stream_id=last)

    def follow(
        self, run_id: str, position: FeedPosition, wait_s: float
    ) -> tuple[list[dict[str, Any]], FeedPosition]:
        """The run's events after ``position``, waiting up to ``wait_s`` for new entries.

        Returns:
            The new events (maybe none) and the position after them.
        """
        if self.stream is None:
            found, after = self._file_since(run_id, position.offset)
            if not found:
                time.sleep(min(FILE_POLL_S, wait_s))
            return found, after
        last = position.stream_id or "$"
        records = []
        for entry_id, log, record in self.stream.follow(last, max(int(wait_s * 1000), 1)):
            last = entry_id
            if log == EVENTS_LOG and _is_run(record, run_id):
                records.append({**record, "event_id": entry_id})
        return records, FeedPosition(stream_id=last)

    def _file_since(self, run_id: str, offset: int) -> tuple[list[dict[str, Any]], FeedPosition]:
        """The run's complete lines of the log from byte ``offset``, and the offset after."""
        path = Path(self.settings.events_path)
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], FeedPosition(offset=offset)
        complete = data.rfind(b"\n") + 1
        records = []
        for line in data[:complete].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn or corrupt line: skipped, as every reader of the log does
            if isinstance(record, dict) and _is_run(record, run_id):
                records.append(record)
        return records, FeedPosition(offset=offset + complete)

    def close(self) -> None:
        """Close the stream's connections, if any."""
        if self.stream is not None:
            self.stream.client.close()
