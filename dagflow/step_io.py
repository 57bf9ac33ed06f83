"""The I/O a step does besides running user code: run-store calls and sending steps.

:func:`with_store` rides out a run store that is briefly unreachable; :func:`send_steps`
publishes ``dagflow.step`` messages (the outbox covers a failed publish).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from kombu.exceptions import KombuError

from dagflow.compile import STEP_TASK, step_name
from dagflow.errors import WorkflowOutputError

if TYPE_CHECKING:
    from celery import Celery

    from dagflow.runtime import Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Run store errors that are retried in-process rather than failing the step.
STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: First and largest pause between two tries of an unreachable run store, in seconds.
STORE_BACKOFF_S = (0.1, 2.0)


def encode_output(task_id: str, value: Any) -> str:
    """Serialize a workflow's return value to JSON.

    Raises:
        WorkflowOutputError: The value holds something JSON cannot encode.
    """
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkflowOutputError(
            f"Task '{task_id}' returned a value that is not JSON-serializable: {exc}"
        ) from None


def with_store(rt: Runtime, what: str, call: Callable[[], T]) -> T:
    """Call the run store, retrying in-process with backoff while it is unreachable.

    A Celery retry would have to publish to the same Redis that just failed (and Celery
    drops the message when that publish fails); waiting here loses nothing. After
    ``DAGFLOW_STORE_RETRY_S`` the error is raised: the step's lease then expires and the
    sweeper runs it again once the store is back.
    """
    deadline = time.monotonic() + rt.settings.store_retry_s
    pause = STORE_BACKOFF_S[0]
    while True:
        try:
            return call()
        except STORE_ERRORS as exc:
            if time.monotonic() + pause > deadline:
                logger.error("dagflow: run store unreachable for %s; giving up: %s", what, exc)
                raise
            logger.warning("dagflow: run store unreachable for %s (%s); retrying", what, exc)
            time.sleep(pause)
            pause = min(pause * 2, STORE_BACKOFF_S[1])


def send_steps(
    app: Celery, run_id: str, task_ids: tuple[str, ...] | list[str], dag_name: str | None
) -> bool:
    """Publish one ``dagflow.step`` per task over one producer; False if publishing failed.

    Several tasks are published in one batch (on Redis, one pipeline: one round trip).

    Each is sent under :func:`~dagflow.compile.step_name` (``<dag name>:<task id>``).

    A failure is logged, not raised: the steps are in the outbox, and the sweeper sends
    them if this did not.
    """
    if not task_ids:
        return True
    step = app.tasks[STEP_TASK]
    try:
        # Several messages go in one round trip (kombu's publish batch: one Redis
        # pipeline); a transport without batches publishes them one by one.
        with (
            app.producer_or_acquire() as producer,
            producer.batch() if len(task_ids) > 1 else nullcontext(),
        ):
            for task_id in task_ids:
                step.apply_async(
                    args=(run_id, task_id),
                    producer=producer,
                    shadow=step_name(dag_name, task_id),
                )
    except (KombuError, OSError, redis.exceptions.RedisError) as exc:
        logger.warning(
            "dagflow: could not send %s of run %s (%s); the sweeper will", task_ids, run_id, exc
        )
        return False
    return True
