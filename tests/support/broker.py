"""Look at a worker's broker from a test: send a step by hand, wait until nothing is in flight."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from dagflow.client.runner import Runner
from dagflow.dag.compile import STEP_TASK

#: kombu's Redis transport keeps delivered, not yet acknowledged messages in this hash.
UNACKED = "unacked"
#: Celery's default queue (a Redis list on the broker).
QUEUE = "celery"
#: How a worker log names a step: ``dagflow.step``, or the ``<dag>:<task>`` it was sent under.
STEP_NAME = r"(?:dagflow\.step|[^\s\[\]]+:[^\s\[\]]+)"
_RECEIVED = re.compile(rf"Task {STEP_NAME}\[([0-9a-f-]+)\] received")
_ENDED = re.compile(rf"Task {STEP_NAME}\[([0-9a-f-]+)\] (?:succeeded|raised|retry)")
#: A step terminated by ``dagflow cancel`` (revoke with terminate) logs no end of its own.
_TERMINATED = re.compile(r"Terminating ([0-9a-f-]+) \(")
_STEP_LINE = re.compile(rf"Task {STEP_NAME}\[")


def step_lines(text: str) -> int:
    """Lines of a worker log about a step message (received, succeeded, raised, retry)."""
    return len(_STEP_LINE.findall(text))


def step_ended(text: str, message_id: str) -> bool:
    """True once a worker log says the step message ``message_id`` succeeded."""
    return re.search(rf"Task {STEP_NAME}\[{re.escape(message_id)}\] succeeded", text) is not None


def read_message(raw: bytes | str) -> dict[str, Any]:
    """A step message as kombu's Redis transport stores it, with its body decoded:
    ``body`` is ``[args, kwargs, embed]``."""
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def send_step(runner: Runner, run_id: str, task_id: str) -> str:
    """Send ``dagflow.step(run_id, task_id)`` as a new message; returns its message id."""
    message_id = uuid.uuid4().hex
    runner.app.tasks[STEP_TASK].apply_async(args=(run_id, task_id), task_id=message_id)
    return message_id


def log_size(log: Path) -> int:
    """Current size of a worker log, to read only what comes after (see :func:`steps_seen`)."""
    return log.stat().st_size if log.exists() else 0


def steps_seen(log: Path, offset: int = 0) -> tuple[int, int]:
    """``dagflow.step`` messages the worker logged after ``offset`` (``-l info``).

    Returns:
        (received, still open): how many it received, and how many of those have not
        ended yet (succeeded, raised, retried or terminated by a cancel).
    """
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    received = _RECEIVED.findall(text)
    ended = set(_ENDED.findall(text)) | set(_TERMINATED.findall(text))
    return len(received), len(set(received) - ended)


def wait_until_idle(
    broker_url: str, log: Path, offset: int = 0, timeout: float = 30.0, quiet_s: float = 0.5
) -> int:
    """Wait until the worker has nothing to do, and has had nothing for ``quiet_s``.

    Idle means: the queue list is empty, no message is delivered and unacknowledged, and
    every ``dagflow.step`` the worker logged as received since ``offset`` has ended.

    Returns:
        How many ``dagflow.step`` messages the worker received since ``offset``.

    Raises:
        AssertionError: Not idle within ``timeout`` seconds.
    """
    client = redis.Redis.from_url(broker_url)
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    last: tuple[int, int] | None = None
    try:
        while True:
            seen = steps_seen(log, offset)
            busy = client.llen(QUEUE) or client.hlen(UNACKED) or seen[1]
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None or seen != last:
                quiet_since = now
            elif now - quiet_since >= quiet_s:
                return seen[0]
            last = seen
            if now > deadline:
                raise AssertionError(f"worker not idle after {timeout} s (received, open)={seen}")
            time.sleep(0.05)
    finally:
        client.close()
