"""A ``dagflow.step`` message as kombu's Redis transport stores it: the wire format the
direct sender writes (:mod:`dagflow.execution.publish`).

It is the message Celery would write (task protocol 2 in kombu's Redis envelope);
``tests/integration/test_step_messages.py`` compares the two field by field, and
:mod:`dagflow.execution.broker_queue` reads the run and task back from a held one.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass

from celery.utils.saferepr import saferepr

from dagflow.dag.compile import STEP_TASK

#: The "embed" part of a protocol 2 body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: Celery's limit for ``argsrepr`` (``Task.argsrepr_maxsize`` default).
_ARGSREPR_MAX = 1024
_COMPACT = (",", ":")
#: The header that carries when a step's message was sent, or its retry falls due (epoch
#: seconds): ``task_start``'s ``queued_s`` is measured from it.
READY_HEADER = "dagflow_ready_at"


@dataclass(frozen=True)
class Sender:
    """Where and with which fixed fields a process writes step messages directly.

    Attributes:
        queue: The Redis list the workers consume ``dagflow.step`` from.
        time_limit: ``[hard, soft]`` seconds, as Celery puts them in the headers.
        ignore_result: The step task's ``ignore_result`` (Celery copies it to the headers).
    """

    queue: str
    time_limit: tuple[float | None, float | None]
    ignore_result: bool


def _argsrepr(run_id: str, task_id: str) -> str:
    # What Celery's saferepr gives for two short strings, at a tenth of its cost.
    text = repr((run_id, task_id))
    return text if len(text) <= _ARGSREPR_MAX else saferepr((run_id, task_id), _ARGSREPR_MAX)


def step_message(
    sender: Sender,
    run_id: str,
    task_id: str,
    shadow: str,
    *,
    origin: str,
    reply_to: str,
    parent_id: str | None = None,
    root_id: str | None = None,
) -> str:
    """One ``dagflow.step`` message as kombu's Redis transport stores it (a JSON string)."""
    msg_id = str(uuid.uuid4())
    args = [run_id, task_id]
    body = json.dumps([args, {}, _EMBED], separators=_COMPACT).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": STEP_TASK,
            "id": msg_id,
            "shadow": shadow,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": list(sender.time_limit),
            "root_id": root_id or msg_id,
            "parent_id": parent_id,
            "argsrepr": _argsrepr(run_id, task_id),
            "kwargsrepr": "{}",
            "origin": origin,
            "ignore_result": sender.ignore_result,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
            READY_HEADER: time.time(),
        },
        "properties": {
            "correlation_id": msg_id,
            "reply_to": reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": sender.queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message, separators=_COMPACT)
