"""What the broker holds: the step queues' backlogs, and the steps workers hold unacknowledged.

The sweeper asks before it re-sends outbox entries (ready steps nobody claimed, retries
that are due). While the queue has a backlog, such a step is most likely still queued and
needs nothing. But it may also sit in a dead worker's hands: on Redis, a message a worker
took stays in kombu's ``unacked`` hash until the worker acknowledges it, or until the
visibility timeout (4 h) gives it back. A retry's ETA message and a prefetched step wait
there too. :func:`look` reads that hash, so the sweeper can re-send exactly the steps
that are held and not running, at once, and leave the queued ones alone.

A live worker's message is in the hash as well, but a live worker claims a ready step at
once and a retry when it is due: a step still held and unclaimed a lease period after it
was due is, in practice, held by a worker that died or froze. Sending it again is safe
(the claim drops whichever copy comes second) and costs one message.

RabbitMQ gives a dead consumer's messages back by itself when its connection closes, so
there the backlog alone decides (``held`` is None).

Steps of tasks with a ``queue`` wait in that queue: :func:`look` reads the backlog of each
queue it is given (the queues of the due steps), so a busy default queue does not hold
back a step due on an idle ``gpu`` queue, nor the reverse.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagflow.dag.compile import STEP_TASK
from dagflow.execution.publish import default_queue

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Entries of the unacknowledged hash one look reads at most (one sweep's worth).
HELD_MAX = 10_000


@dataclass(frozen=True)
class BrokerView:
    """What one look at the broker saw.

    Attributes:
        backlog: Messages waiting in all the queues looked at, or None if the broker
            cannot say.
        held: ``(run_id, task_id)`` of the step messages workers hold unacknowledged, or
            None if the broker cannot say (not Redis, or it was not asked).
        backlogs: Messages waiting in each queue looked at (empty if the broker cannot say).
    """

    backlog: int | None
    held: frozenset[tuple[str, str]] | None = None
    backlogs: Mapping[str, int] = field(default_factory=dict)

    def backlog_of(self, queue: str) -> int | None:
        """Messages waiting in ``queue``, or None if the broker cannot say."""
        return self.backlogs.get(queue) if self.backlog is not None else None


def look(app: Celery, *, held: bool = True, queues: Collection[str] = ()) -> BrokerView:
    """The backlog of ``queues`` (default: the step's default queue) and, if ``held`` and
    a queue is not empty, the held steps.

    Never raises: what the broker cannot answer is None, and the sweeper then sends.
    """
    names = sorted(set(queues)) or [default_queue(app)]
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            backlogs = {name: _backlog(channel, name) for name in names}
            backlog = sum(backlogs.values())
            if not held or not backlog or conn.transport.driver_type != "redis":
                return BrokerView(backlog, backlogs=backlogs)
            return BrokerView(backlog, _held(channel), backlogs)
    except Exception as exc:
        logger.debug("dagflow: the broker's queue is unknown: %s", exc)  # send anyway
        return BrokerView(None)


def _backlog(channel: Any, queue: str) -> int:
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:
        if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
            return 0  # no queue yet: nothing waits in it
        raise


def _held(channel: Any) -> frozenset[tuple[str, str]]:
    # kombu's Redis channel: its client applies any global_keyprefix itself.
    client = channel.client
    found: set[tuple[str, str]] = set()
    for n, (_tag, raw) in enumerate(client.hscan_iter(channel.unacked_key, count=500)):
        if n >= HELD_MAX:
            break
        step = step_of(raw)
        if step is not None:
            found.add(step)
    return frozenset(found)


def step_of(raw: bytes | str) -> tuple[str, str] | None:
    """``(run_id, task_id)`` of a ``dagflow.step`` message as kombu keeps it unacknowledged
    (``[message, exchange, routing_key]``), or None for any other message."""
    try:
        message = json.loads(raw)[0]
        if message.get("headers", {}).get("task") != STEP_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]), str(args[1])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, binascii.Error):
        return None
