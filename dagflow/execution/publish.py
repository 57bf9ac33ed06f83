"""Publishing ``dagflow.step`` messages: straight onto a Redis queue, or through Celery.

Every step dagflow sends goes out through this module: a run's start canvas
(:func:`send_start`), children and re-sends (:func:`send_steps`), a retry's ETA message
(:func:`send_later`) and the messages a finish script pushes itself (:func:`link_push`).

A step message is two short strings, yet sending one with ``apply_async`` costs about
0.6 ms of CPU in the sending process: Celery builds the message and fires its signals,
kombu creates a Redis client for every publish and routes the message. On a no-op step
that is the largest single cost, and a third of every hop of a chain (bench/README.md).

When the broker is a plain ``redis://`` URL, or a ``sentinel://`` URL without TLS, and
``dagflow.step`` is routed the default way (a direct queue, no priority, JSON, no key
prefix), :class:`RedisStepSender` writes the message Celery would write (task protocol 2 in
the envelope of kombu's Redis transport, which its Sentinel transport shares) with one
``LPUSH`` per batch, on a client it keeps. On Sentinel that client is opened on the primary
kombu uses (the same ``master_name`` transport option) and follows a promotion as kombu
does. Anything else (RabbitMQ, the in-memory broker, TLS, custom routes, priorities,
``global_keyprefix``) goes through Celery
(:func:`direct_sender` decides; ``tests/unit/test_step_publish.py``), and
``tests/integration/test_step_messages.py`` checks that the two messages agree field by
field.

When the run store is on the broker's Redis too, a step's finish script can push its
children's messages itself (:func:`link_push`): no publish at all after the finish.

**Queues.** A task with a ``queue`` (``RunPlan.queues``) is sent to that queue by every path
here: directly onto the Redis list of that name when the queue is a plain direct one
(:meth:`RedisStepSender.accepts`), else through Celery with ``queue=``. Steps of one send
that go to different queues are sent queue by queue. A finish script pushes onto one list:
links on several queues are all sent after the finish instead.

What a direct send does not do: fire Celery's ``before_task_publish`` and
``after_task_publish`` signals (dagflow sends no task-sent events either).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from celery.utils.nodenames import anon_nodename

from dagflow.dag.compile import STEP_TASK, step_name, steps_canvas
from dagflow.dag.mapping import base_task_id
from dagflow.execution.message import READY_HEADER, Sender, step_message
from dagflow.redis_url import DEFAULT_MASTER_NAME, is_sentinel_url, redis_client, same_redis
from dagflow.stores.base import Push, RunStore
from dagflow.stores.transport import BACKEND_ERRORS

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Messages per ``LPUSH`` command.
LPUSH_MAX = 1000
#: Most links whose messages a finish script pushes itself. A wider fan-out is published
#: after the finish (in chunks of LPUSH_MAX): one script call carrying thousands of
#: messages would hold up the Redis server, for a round trip that no longer matters there.
PUSH_MAX = 100


def direct_sender(app: Celery) -> Sender | None:
    """The :class:`Sender` for ``app``, or None when its messages must go through Celery."""
    conf = app.conf
    url = conf.broker_url
    if not isinstance(url, str):
        return None
    if is_sentinel_url(url):
        # kombu finds the primary by this name; without it Celery cannot connect either.
        if not _master_name(app) or conf.broker_use_ssl:
            return None
    elif ";" in url or urlsplit(url).scheme != "redis":
        return None
    if (conf.broker_transport_options or {}).get("global_keyprefix"):
        return None
    if conf.task_serializer != "json" or conf.task_compression or conf.task_protocol != 2:
        return None
    if conf.task_default_delivery_mode not in (2, "persistent"):
        return None
    task = app.tasks[STEP_TASK]
    if task.serializer not in (None, "json") or getattr(task, "compression", None):
        return None
    if task.priority is not None or conf.task_default_priority is not None:
        return None
    route = app.amqp.router.route({}, STEP_TASK, (), {}, task)
    queue = route.get("queue")
    if queue is None or set(route) != {"queue"}:
        return None
    if not _plain_queue(queue):
        return None
    return Sender(queue.name, (task.time_limit, task.soft_time_limit), bool(task.ignore_result))


def _master_name(app: Celery) -> str | None:
    """The Sentinel primary's name kombu uses for ``app``'s broker (None if unset)."""
    name = (app.conf.broker_transport_options or {}).get("master_name")
    return str(name) if name else None


def default_queue(app: Celery) -> str:
    """The queue a step without a ``queue`` goes to: ``dagflow.step``'s route in ``app``
    (``task_routes``), else Celery's ``task_default_queue``.

    Found once per app, like the sender (:func:`_direct`): every step's ``task_start`` names
    its queue, and routing costs more than the rest of that event.
    """
    found: str | None = getattr(app, "dagflow_default_queue", None)
    if found is None:
        try:
            route = app.amqp.router.route({}, STEP_TASK, (), {}, app.tasks[STEP_TASK])
            found = str(route["queue"].name)
        except (KeyError, AttributeError):
            found = str(app.conf.task_default_queue)
        app.dagflow_default_queue = found
    return found


def _plain_queue(queue: Any) -> bool:
    """Whether a kombu queue is a direct queue whose Redis list has its own name."""
    if queue.exchange.type != "direct" or queue.routing_key != queue.name:
        return False
    return queue.exchange.name in ("", queue.name)


class RedisStepSender:
    """Writes step messages straight onto the broker's Redis queue (see the module doc)."""

    def __init__(self, app: Celery, sender: Sender) -> None:
        self.app = app
        self.sender = sender
        self._accepted: dict[str, bool] = {sender.queue: True}
        # Connect within Celery's broker_connection_timeout, as kombu's client does, and to
        # the primary kombu uses when the broker is a Sentinel URL.
        self.client = redis_client(
            app.conf.broker_url,
            master_name=_master_name(app) or DEFAULT_MASTER_NAME,
            health_check_interval=30,
            socket_connect_timeout=app.conf.broker_connection_timeout,
        )

    def accepts(self, queue: str) -> bool:
        """Whether a message for ``queue`` may be written straight onto the list ``queue``.

        True for a queue Celery would create by itself (``task_create_missing_queues``: a
        direct exchange and routing key of the queue's name) or one declared in
        ``task_queues`` the same way; any other declaration goes through Celery.
        """
        found = self._accepted.get(queue)
        if found is None:
            declared = dict.get(self.app.amqp.queues, queue)  # no auto-creation on lookup
            if declared is None:
                conf = self.app.conf
                found = bool(conf.task_create_missing_queues) and not conf.task_queue_max_priority
            else:
                found = _plain_queue(declared) and declared.max_priority is None
            self._accepted[queue] = found
        return found

    def messages(
        self,
        run_id: str,
        task_ids: Sequence[str],
        dag_name: str | None,
        queue: str | None = None,
    ) -> list[str]:
        """One message per task, for ``queue`` (default: the step's default queue); sent
        from a step, they name it as their parent, as Celery's do."""
        sender = self.sender if queue is None else replace(self.sender, queue=queue)
        parent = self.app.current_worker_task
        parent_id = parent.request.id if parent else None
        root_id = (parent.request.root_id or parent_id) if parent else None
        origin, reply_to = anon_nodename(), self.app.thread_oid  # as Celery's send_task
        return [
            step_message(
                sender,
                run_id,
                task_id,
                step_name(dag_name, task_id),
                origin=origin,
                reply_to=reply_to,
                parent_id=parent_id,
                root_id=root_id,
            )
            for task_id in task_ids
        ]

    def send(
        self,
        run_id: str,
        task_ids: Sequence[str],
        dag_name: str | None,
        front: bool = False,
        queue: str | None = None,
    ) -> None:
        """Push one message per task onto ``queue`` (default: the step's default queue) in
        one round trip (consumed in ``task_ids`` order); with ``front``, at the head of the
        queue (consumed next, as kombu restores)."""
        queue = queue or self.sender.queue
        messages = self.messages(run_id, task_ids, dag_name, queue)
        if front:  # workers pop from the right end
            self.client.rpush(queue, *reversed(messages))
            return
        if len(messages) <= LPUSH_MAX:
            self.client.lpush(queue, *messages)
            return
        # A huge fan-out goes as several LPUSHes in one pipeline: one round trip, and no
        # single command long enough to hold up other clients of the server.
        with self.client.pipeline(transaction=False) as pipe:
            for i in range(0, len(messages), LPUSH_MAX):
                pipe.lpush(queue, *messages[i : i + LPUSH_MAX])
            pipe.execute()


def _direct(app: Celery) -> RedisStepSender | None:
    found: RedisStepSender | bool | None = getattr(app, "dagflow_step_sender", None)
    if found is None:
        sender = direct_sender(app)
        found = RedisStepSender(app, sender) if sender else False
        app.dagflow_step_sender = found
    return found if isinstance(found, RedisStepSender) else None


def link_push(
    app: Celery,
    store: RunStore,
    run_id: str,
    links: Sequence[str],
    dag_name: str | None,
    queues: Mapping[str, str] | None = None,
) -> Push | None:
    """Messages for a step's links that its ``finish`` can push itself, or None.

    The script pushes onto one list, so the links must share one queue (``queues`` maps a
    task to its queue; absent is the default): links on several queues are sent after
    the finish, each to its own queue.

    Only when steps go straight onto Redis, the run store is on the broker's Redis (same
    URL, or the same Sentinel primary and database) and writes the events itself: then
    ``task_ok`` and the children's messages are written in one atomic step, so no child can
    start before its parent's ``task_ok`` is in the stream, and nothing is published after
    it. A replica receives a script's writes together, so a promotion keeps both or neither.
    """
    if not links or len(links) > PUSH_MAX or not store.writes_events:
        return None
    broker = app.conf.broker_url
    if not same_redis(getattr(store, "url", None), broker):
        return None
    if is_sentinel_url(broker) and getattr(store, "master_name", None) != _master_name(app):
        return None
    direct = _direct(app)
    if direct is None:
        return None
    queue_of = queues or {}
    targets = {queue_of.get(link) for link in links}
    if len(targets) != 1:
        return None
    queue = targets.pop() or direct.sender.queue
    if not direct.accepts(queue):
        return None
    messages = direct.messages(run_id, links, dag_name, queue)
    return Push(queue, dict(zip(links, messages, strict=True)))


def _send_with_celery(
    app: Celery, run_id: str, task_ids: Sequence[str], dag_name: str | None, queue: str | None
) -> None:
    step = app.tasks[STEP_TASK]
    options = {"queue": queue} if queue else {}
    # Several messages go in one kombu publish batch (on Redis, one pipeline); a
    # transport without batches publishes them one by one.
    with (
        app.producer_or_acquire() as producer,
        producer.batch() if len(task_ids) > 1 else nullcontext(),
    ):
        for task_id in task_ids:
            step.apply_async(
                args=(run_id, task_id),
                producer=producer,
                shadow=step_name(dag_name, task_id),
                headers={READY_HEADER: time.time()},
                **options,
            )


def send_start(
    app: Celery,
    run_id: str,
    task_ids: Sequence[str],
    dag_name: str | None,
    queues: Mapping[str, str] | None = None,
) -> None:
    """Send a run's first steps as the compiled start canvas: one ``dagflow.step``
    signature, or a ``group`` of them (:func:`~dagflow.dag.compile.steps_canvas`), each to
    its task's queue.

    The steps are in the outbox already (stored with the run): if this publish fails, the
    sweeper sends them. Errors are raised, as Celery raises them, to the caller that
    started the run.
    """
    if task_ids:
        canvas = steps_canvas(app, run_id, task_ids, dag_name, queues)
        canvas.apply_async(headers={READY_HEADER: time.time()})


def send_later(
    app: Celery,
    run_id: str,
    task_id: str,
    dag_name: str | None,
    countdown: float,
    queue: str | None = None,
) -> bool:
    """Publish one ``dagflow.step`` due in ``countdown`` seconds to ``queue`` (None: the
    default route); a retry's fast path: an ETA message the receiving worker holds until
    due. False if publishing failed.

    A failure is logged, not raised: the retry is in the outbox, and the sweeper sends it
    when due if this did not.
    """
    options = {"queue": queue} if queue else {}
    try:
        app.tasks[STEP_TASK].apply_async(
            args=(run_id, task_id),
            countdown=countdown,
            shadow=step_name(dag_name, task_id),
            headers={READY_HEADER: time.time() + countdown},
            **options,
        )
    except BACKEND_ERRORS as exc:
        logger.warning("dagflow: retry of %s not sent (%s); the sweeper will", task_id, exc)
        return False
    return True


def send_steps(
    app: Celery,
    run_id: str,
    task_ids: Sequence[str],
    dag_name: str | None,
    *,
    queues: Mapping[str, str],
    front: bool = False,
) -> bool:
    """Publish one ``dagflow.step`` per task, together; False if publishing failed.

    Each is sent under :func:`~dagflow.dag.compile.step_name` (``<dag name>:<task id>``),
    to its task's queue in ``queues`` (``RunPlan.queues``; the default route for a task
    not in it). ``front`` puts them at the head of a Redis queue written directly (the
    sweeper's recovery of what a dead worker held); through Celery they join its tail.

    A failure is logged, not raised: the steps are in the outbox, and the sweeper sends
    them if this did not.
    """
    if not task_ids:
        return True
    try:
        direct = _direct(app)
        for queue, group in by_queue(task_ids, queues).items():
            if direct is not None and direct.accepts(queue or direct.sender.queue):
                direct.send(run_id, group, dag_name, front, queue)
            else:
                _send_with_celery(app, run_id, group, dag_name, queue)
    except BACKEND_ERRORS as exc:
        logger.warning(
            "dagflow: could not send %s of run %s (%s); the sweeper will", task_ids, run_id, exc
        )
        return False
    return True


def by_queue(
    task_ids: Sequence[str], queues: Mapping[str, str] | None
) -> dict[str | None, list[str]]:
    """``task_ids`` grouped by their queue in ``queues`` (None: the default route), each
    group in ``task_ids`` order."""
    if not queues:
        return {None: list(task_ids)}
    groups: dict[str | None, list[str]] = {}
    for task_id in task_ids:
        # An instance (``process[3]``) goes to its mapped task's queue.
        queue = queues.get(task_id) or queues.get(base_task_id(task_id))
        groups.setdefault(queue, []).append(task_id)
    return groups
