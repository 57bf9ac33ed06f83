"""Which apps write step messages straight onto Redis, and which go through Celery."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest
from kombu import Exchange, Queue

from dagflow.celery_app import make_app
from dagflow.execution.message import Sender
from dagflow.execution.publish import RedisStepSender, by_queue, direct_sender, send_steps
from dagflow.settings import Settings

REDIS = "redis://127.0.0.1:1/3"  # never connected to: only the app's settings are read


def app_with(broker: str = REDIS, **conf: Any) -> Any:
    app = make_app(Settings(broker_url=broker, result_backend=REDIS))
    app.conf.update(conf)
    return app


def test_the_default_redis_app_writes_to_celerys_default_queue() -> None:
    assert direct_sender(app_with()) == Sender("celery", (None, None), True)


def test_a_route_to_another_direct_queue_is_followed() -> None:
    sender = direct_sender(app_with(task_routes={"dagflow.step": {"queue": "steps"}}))
    assert sender is not None and sender.queue == "steps"


def test_a_sentinel_broker_writes_to_the_primary_kombu_uses() -> None:
    # Given a broker found through two sentinels, under a master name of our own
    app = make_app(
        Settings(
            broker_url="sentinel://127.0.0.1:1/3;sentinel://127.0.0.1:2/3",
            result_backend="sentinel://127.0.0.1:1/3;sentinel://127.0.0.1:2",
            redis_master_name="df-primary",
        )
    )
    # Then steps go straight onto its default queue, on a client of that primary
    assert direct_sender(app) == Sender("celery", (None, None), True)
    assert app.conf.broker_transport_options["master_name"] == "df-primary"


def test_time_limits_travel_in_the_headers_as_celery_puts_them() -> None:
    app = app_with()
    app.tasks["dagflow.step"].time_limit = 60
    app.tasks["dagflow.step"].soft_time_limit = 50
    sender = direct_sender(app)
    assert sender is not None and sender.time_limit == (60, 50)


@pytest.mark.parametrize(
    ("broker", "conf"),
    [
        ("memory://", {}),
        ("amqp://guest@127.0.0.1:5672//", {}),
        ("rediss://127.0.0.1:1/3", {}),
        ("sentinel://127.0.0.1:26379", {"broker_use_ssl": {"ssl_cert_reqs": "required"}}),
        ("sentinel://127.0.0.1:26379", {"broker_transport_options": {}}),
        ("redis://127.0.0.1:1/3;redis://127.0.0.1:2/3", {}),
        (REDIS, {"broker_transport_options": {"global_keyprefix": "app1:"}}),
        (REDIS, {"task_default_priority": 5}),
        (REDIS, {"task_compression": "gzip"}),
        (REDIS, {"task_protocol": 1}),
        (REDIS, {"task_default_delivery_mode": "transient"}),
        (REDIS, {"task_routes": {"dagflow.step": {"queue": "steps", "priority": 3}}}),
        (REDIS, {"task_routes": {"dagflow.step": {"exchange": "fan", "exchange_type": "fanout"}}}),
    ],
    ids=[
        "memory",
        "rabbitmq",
        "tls",
        "sentinel-tls",
        "sentinel-without-master-name",
        "failover-list",
        "key-prefix",
        "priority",
        "compression",
        "protocol-1",
        "transient",
        "routed-with-priority",
        "fanout-exchange",
    ],
)
def test_anything_but_a_plain_redis_queue_goes_through_celery(
    broker: str, conf: dict[str, Any]
) -> None:
    assert direct_sender(app_with(broker, **conf)) is None


def test_a_send_to_a_redis_that_is_gone_reports_failure_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an app whose Redis broker is a port nobody listens on (the steps sit in the
    # outbox, so a failed send must only be logged: the sweeper sends them later)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = app_with(f"redis://127.0.0.1:{port}/3")
    assert direct_sender(app) is not None
    # When steps are sent, then the send says it failed, promptly, and logs why
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="dagflow.execution.publish"):
        assert send_steps(app, "run-1", ["a", "b"], "etl", queues={}) is False
    assert time.monotonic() - started < 10
    assert "could not send ['a', 'b'] of run run-1" in caplog.text
    assert "the sweeper will" in caplog.text


def test_steps_are_grouped_by_their_queue_in_order() -> None:
    queues = {"b": "gpu", "d": "gpu", "c": "io"}
    assert by_queue(["a", "b", "c", "d", "e"], queues) == {
        None: ["a", "e"],
        "gpu": ["b", "d"],
        "io": ["c"],
    }
    assert by_queue(["a", "b"], None) == {None: ["a", "b"]}


def test_a_direct_message_for_a_queue_is_routed_to_that_queue() -> None:
    # Given the direct sender of a plain Redis app
    app = app_with()
    sender = direct_sender(app)
    assert sender is not None
    direct = RedisStepSender(app, sender)
    # When messages are built for the gpu queue and for the default route
    gpu, default = (direct.messages("run-1", ["t"], "etl", q)[0] for q in ("gpu", None))
    # Then each names its own queue as its routing key (the list a worker of -Q gpu reads)
    assert json.loads(gpu)["properties"]["delivery_info"]["routing_key"] == "gpu"
    assert json.loads(default)["properties"]["delivery_info"]["routing_key"] == "celery"


@pytest.mark.parametrize(
    ("conf", "accepted"),
    [
        ({}, True),  # Celery creates it as a direct queue of its name: its own list
        ({"task_create_missing_queues": False}, False),  # Celery must say it is unknown
        ({"task_queues": [Queue("gpu", Exchange("gpu"), routing_key="gpu")]}, True),
        ({"task_queues": [Queue("gpu", Exchange("hw"), routing_key="cuda")]}, False),
        ({"task_queues": [Queue("gpu", Exchange("gpu", type="fanout"))]}, False),
        ({"task_queues": [Queue("gpu", max_priority=10)]}, False),
        ({"task_queue_max_priority": 10}, False),
    ],
    ids=["missing", "no-missing", "declared", "other-key", "fanout", "priority", "max-priority"],
)
def test_a_queue_is_written_directly_only_when_celery_would_write_its_own_list(
    conf: dict[str, Any], accepted: bool
) -> None:
    app = app_with(**conf)
    sender = direct_sender(app)
    assert sender is not None
    direct = RedisStepSender(app, sender)
    assert direct.accepts("gpu") is accepted
    assert direct.accepts("celery") is True
