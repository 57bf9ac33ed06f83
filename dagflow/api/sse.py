"""Server-sent events of one run: its events so far, then live ones until it ends.

Each event is ``id: <event_id>`` (the stream entry id, in stream mode), ``event: <name>``
and ``data: <the JSON line>``. The stream ends after the run's ``dag_done`` with one
``event: end`` (``data``: the run id and status); a run whose status says it ended but whose
``dag_done`` is not to be found (trimmed from the stream) ends it too. A comment line every
:data:`KEEPALIVE_S` keeps proxies from closing a quiet connection. A client that reconnects
with ``Last-Event-ID`` gets only the events after that id.

Reads block in worker threads of their own (:data:`FOLLOWERS` at once), so open streams
never take the threads the other routes run in.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.to_thread import run_sync
from fastapi import Request

from dagflow.api.context import ApiContext
from dagflow.stores.base import TERMINAL

#: Seconds one read waits for new events.
POLL_S = 1.0
#: Seconds between keep-alive comments on a quiet stream.
KEEPALIVE_S = 15.0
#: Seconds between looks at the run's status while no event comes.
STATUS_EVERY_S = 2.0
#: Streams that may wait for events at once (each wait holds a thread).
FOLLOWERS = 256
_followers: anyio.CapacityLimiter | None = None
#: Run statuses after which no event comes (the tasks' terminal states, and ``success``).
ENDED = TERMINAL | {"success"}


def wants_event_stream(request: Request) -> bool:
    """True when the client asked for ``text/event-stream``."""
    return "text/event-stream" in request.headers.get("accept", "")


def sse_message(record: dict[str, Any]) -> str:
    """One server-sent event for an event record."""
    lines = []
    if record.get("event_id"):
        lines.append(f"id: {record['event_id']}")
    lines.append(f"event: {record.get('event', 'message')}")
    lines.append("data: " + json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(lines) + "\n\n"


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


def _limiter() -> anyio.CapacityLimiter:
    global _followers
    if _followers is None:
        _followers = anyio.CapacityLimiter(FOLLOWERS)
    return _followers


async def event_stream(
    ctx: ApiContext, request: Request, run_id: str, started_at: float | None
) -> AsyncIterator[str]:
    """The body of a run's event stream (see the module docstring)."""
    limiter = _limiter()
    records, position = await run_sync(ctx.feed.history, run_id, started_at, limiter=limiter)
    after = request.headers.get("last-event-id")
    if after:
        records = [r for r in records if _entry_key(str(r.get("event_id", ""))) > _entry_key(after)]
    status: str | None = None
    for record in records:
        yield sse_message(record)
        if record.get("event") == "dag_done":
            status = str(record.get("status", ""))
    last_sent = last_status = time.monotonic()
    ended_seen = 0
    while status is None:
        if await request.is_disconnected():
            return
        records, position = await run_sync(
            ctx.feed.follow, run_id, position, POLL_S, limiter=limiter
        )
        for record in records:
            yield sse_message(record)
            last_sent = time.monotonic()
            if record.get("event") == "dag_done":
                status = str(record.get("status", ""))
        now = time.monotonic()
        if status is None and now - last_status >= STATUS_EVERY_S:
            last_status = now
            snap = await run_sync(ctx.store.snapshot, run_id, limiter=limiter)
            if snap is None or snap.status in ENDED:
                # Its dag_done is written with the end: give the next read one more chance.
                ended_seen += 1
                if ended_seen >= 2:
                    status = snap.status if snap is not None else "expired"
        if status is None and now - last_sent >= KEEPALIVE_S:
            last_sent = now
            yield ": keep-alive\n\n"
    yield "event: end\ndata: " + json.dumps({"run_id": run_id, "status": status}) + "\n\n"
