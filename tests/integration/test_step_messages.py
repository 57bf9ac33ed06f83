"""What a run really puts on the broker: step messages stay small however big the DAG, and
the ones dagflow writes straight onto Redis are the ones Celery would write.

Messages are read as Redis received them (``MONITOR``, filtered to the core database), so
the continuations a worker publishes count as much as the start canvas the client sends.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from types import TracebackType

import pytest
import redis

from dagflow.celery_app import make_app
from dagflow.client.runner import Runner
from dagflow.dag.compile import STEP_TASK
from dagflow.execution.message import READY_HEADER
from dagflow.execution.publish import PUSH_MAX, link_push, send_later, send_steps
from dagflow.settings import Settings
from dagflow.stores import RedisRunStore
from tests.support.broker import read_message
from tests.support.dags import make_dag, task

pytestmark = pytest.mark.integration
WIDTH = 9_998  # root -> 9,998 -> sink: 10,000 tasks
#: Where the next message starts in an LPUSH of several (MONITOR joins arguments by spaces).
MESSAGE_START = re.compile(r' (?=\{"body":)')
#: The run id in a ``dagflow.step`` message's ``argsrepr`` (compact JSON or kombu's).
STEP_ARGS = re.compile(r'"task": ?"dagflow\.step".*"argsrepr": ?"\(\'([^\']*)\'')


class PublishedSteps:
    """Sizes of the ``dagflow.step`` messages pushed to one database, by run id, via MONITOR,
    and which of them a Lua script pushed (a step's ``finish``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = int(url.rsplit("/", 1)[1])
        self.sizes: dict[str, list[int]] = defaultdict(list)
        self.from_lua: dict[str, int] = defaultdict(int)
        self._marker = f"end-of-monitor-{id(self)}"
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> PublishedSteps:
        self._monitor.__enter__()  # MONITOR is on before anything is sent
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Commands reach MONITOR in the order Redis ran them: once the marker is read,
        # every message pushed before it has been counted.
        self._client.echo(self._marker)
        self._thread.join(30)
        self._monitor.__exit__()
        self._client.close()
        assert not self._thread.is_alive(), "MONITOR reader did not see its end marker"

    def _read(self) -> None:
        for entry in self._monitor.listen():
            command = entry["command"]
            if self._marker in command:
                return
            if entry["db"] != self.db or not command.startswith("LPUSH celery "):
                continue
            # One LPUSH may carry several messages (a batch), each a JSON object.
            for message in MESSAGE_START.split(command[len("LPUSH celery ") :]):
                found = STEP_ARGS.search(message)
                if found:
                    self.sizes[found.group(1)].append(len(message))
                    self.from_lua[found.group(1)] += entry["client_type"] == "lua"


@pytest.mark.timeout(180)
def test_step_message_does_not_grow_with_the_dag(redis_runner: Runner, redis_db: str) -> None:
    # Given a 3-task run and a 10,000-task run (root -> 9,998 -> sink) on the session worker
    small = make_dag([task("r"), task("m0", deps=("r",)), task("s", deps=("m0",))])
    mids = [task(f"m{i}", deps=("r",)) for i in range(WIDTH)]
    # (the sink returns a small value: echoing its 9,998 parents' outputs would be an output
    # over DAGFLOW_OUTPUT_INLINE_MAX, which fails without an output store)
    sink = task("s", "test.value", deps=tuple(m["id"] for m in mids), params={"value": {"n": 1}})
    big = make_dag([task("r"), *mids, sink])
    # When both run while every message pushed to the broker is measured
    with PublishedSteps(redis_db) as seen:
        first = redis_runner.submit(small)
        assert first.wait(timeout=60).status == "success"
        second = redis_runner.submit(big)
        result = second.wait(timeout=150)
        assert (result.status, result.succeeded) == ("success", WIDTH + 2)
    small_sizes, big_sizes = seen.sizes[first.run_id], seen.sizes[second.run_id]
    # Then each step was one message, and the largest message of the big run is as large as
    # the small run's but for the longer task ids (a few bytes each in args and argsrepr)
    assert len(small_sizes) == 3 and len(big_sizes) == WIDTH + 2
    assert max(big_sizes) <= max(small_sizes) + 64, (max(small_sizes), max(big_sizes))
    assert max(big_sizes) < 2048


def test_a_step_written_straight_to_redis_is_the_message_celery_would_send(
    scratch_redis: str,
) -> None:
    # Given an app on a Redis broker, and the same step sent by Celery's apply_async
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    app.tasks[STEP_TASK].apply_async(args=("run-1", "t1"), shadow="etl:t1")
    # When dagflow sends it (its direct path) after it
    assert send_steps(app, "run-1", ["t1"], "etl", queues={})
    client = redis.Redis.from_url(scratch_redis)
    celerys, ours = (read_message(client.rpop("celery")) for _ in range(2))
    assert client.llen("celery") == 0
    # Then the two agree on every field but the fresh ids: body, headers and envelope
    for message in (celerys, ours):
        msg_id = message["headers"].pop("id")
        assert message["headers"].pop("root_id") == msg_id
        assert message["properties"].pop("correlation_id") == msg_id
        assert message["properties"].pop("delivery_tag")
    # (and the send time dagflow adds, for dagflow_task_queue_wait_seconds)
    assert abs(ours["headers"].pop(READY_HEADER) - time.time()) < 60
    assert ours == celerys
    assert ours["body"][0] == ["run-1", "t1"]


@pytest.mark.timeout(60)
def test_a_chain_step_pushes_its_child_in_the_same_atomic_finish(
    redis_runner: Runner, redis_db: str
) -> None:
    # Given a chain a -> b -> c on the session worker (run store on the broker's Redis)
    chain = make_dag([task("a"), task("b", deps=("a",)), task("c", deps=("b",))])
    # When it runs while every message pushed is watched
    with PublishedSteps(redis_db) as seen:
        handle = redis_runner.submit(chain)
        assert handle.wait(timeout=30).status == "success"
    # Then the client sent the root, and each child was pushed by its parent's finish script
    assert len(seen.sizes[handle.run_id]) == 3
    assert seen.from_lua[handle.run_id] == 2


def test_a_finish_pushes_messages_only_on_the_brokers_redis_and_for_a_small_fan_out(
    scratch_redis: str, redis_db: str
) -> None:
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    store = RedisRunStore(scratch_redis, events_maxlen=1000)
    links = [f"c{i}" for i in range(PUSH_MAX + 1)]
    # On the broker's Redis, with the event stream, a few links: one message each
    push = link_push(app, store, "run-1", links[:3], "etl")
    assert push is not None and push.queue == "celery"
    assert [read_message(m)["body"][0] for m in push.messages.values()] == [
        ["run-1", "c0"],
        ["run-1", "c1"],
        ["run-1", "c2"],
    ]
    # A wide fan-out, a store elsewhere or a store without the event stream: published after
    assert link_push(app, store, "run-1", links, "etl") is None
    assert (
        link_push(app, RedisRunStore(redis_db, events_maxlen=1000), "run-1", ["c0"], "etl") is None
    )
    assert link_push(app, RedisRunStore(scratch_redis), "run-1", ["c0"], "etl") is None


def test_steps_of_tasks_with_a_queue_land_on_that_queues_list(scratch_redis: str) -> None:
    # Given an app on a Redis broker and a run whose tasks b and d are on the gpu queue
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    queues = {"b": "gpu", "d": "gpu"}
    client = redis.Redis.from_url(scratch_redis)
    # When a, b, c and d are sent together, then e to the head of gpu (a sweeper re-send)
    assert send_steps(app, "run-1", ["a", "b", "c", "d"], "etl", queues=queues)
    assert send_steps(app, "run-1", ["e"], "etl", front=True, queues={"e": "gpu"})

    def tasks_in(queue: str) -> list[str]:
        # Workers pop from the right: read in the order they would consume
        return [read_message(m)["body"][0][1] for m in reversed(client.lrange(queue, 0, -1))]

    # Then each went onto its own queue's list, in order, e ahead of the rest
    assert tasks_in("celery") == ["a", "c"]
    assert tasks_in("gpu") == ["e", "b", "d"]


def test_a_direct_step_for_a_queue_is_the_message_celery_would_send_there(
    scratch_redis: str,
) -> None:
    # Given the same step on the gpu queue, sent by Celery's apply_async and then by dagflow
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    app.tasks[STEP_TASK].apply_async(args=("run-1", "t1"), shadow="etl:t1", queue="gpu")
    assert send_steps(app, "run-1", ["t1"], "etl", queues={"t1": "gpu"})
    client = redis.Redis.from_url(scratch_redis)
    celerys, ours = (read_message(client.rpop("gpu")) for _ in range(2))
    assert client.llen("gpu") == 0 and client.llen("celery") == 0
    # Then both are on gpu's list, routed to gpu, and agree on body and headers
    for message in (celerys, ours):
        message["headers"].pop("id"), message["headers"].pop("root_id")
        assert message["properties"]["delivery_info"]["routing_key"] == "gpu"
    assert isinstance(ours["headers"].pop(READY_HEADER), float)
    assert ours["headers"] == celerys["headers"]
    assert ours["body"] == celerys["body"]


def test_a_retry_is_sent_to_its_tasks_queue(scratch_redis: str) -> None:
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    assert send_later(app, "run-1", "t1", "etl", 30.0, "gpu")
    client = redis.Redis.from_url(scratch_redis)
    assert client.llen("celery") == 0
    retry = read_message(client.rpop("gpu"))
    assert retry["body"][0] == ["run-1", "t1"] and retry["headers"]["eta"]


def test_a_finish_pushes_links_onto_their_queue_or_leaves_mixed_queues_to_after_it(
    scratch_redis: str,
) -> None:
    app = make_app(Settings(broker_url=scratch_redis, result_backend=scratch_redis))
    store = RedisRunStore(scratch_redis, events_maxlen=1000)
    # Links that share the gpu queue are pushed onto gpu's list by the finish script
    push = link_push(app, store, "run-1", ["c0", "c1"], "etl", {"c0": "gpu", "c1": "gpu"})
    assert push is not None and push.queue == "gpu"
    routes = {read_message(m)["properties"]["delivery_info"]["routing_key"] for m in push.messages.values()}  # fmt: skip
    assert routes == {"gpu"}
    # Links on two queues (one on the default route) are sent after the finish, each to its own
    assert link_push(app, store, "run-1", ["c0", "c1"], "etl", {"c0": "gpu"}) is None
