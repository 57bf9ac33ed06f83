"""Settings from the environment: documented defaults, the seed's variables, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagflow.errors import ConfigError
from dagflow.settings import Settings


def test_defaults_are_the_embedded_mode_and_the_seed_paths() -> None:
    settings = Settings.from_env({})
    assert settings.embedded and settings.result_backend is None
    assert settings.events_path == Path("logs/orchestrator_events.jsonl")
    assert settings.state_path == Path("logs/orchestrator_state.jsonl")
    assert (settings.sched_tick_ms, settings.sched_max_parallel, settings.panel_window_h) == (
        1000,
        3,
        24,
    )
    assert settings.dashboard_host == "127.0.0.1"


def test_result_backend_defaults_to_the_brokers_redis() -> None:
    settings = Settings.from_env({"DAGFLOW_BROKER_URL": "redis://h:6379/3"})
    assert (settings.broker_url, settings.result_backend) == ("redis://h:6379/3",) * 2
    amqp = Settings.from_env({"DAGFLOW_BROKER_URL": "amqp://guest@h//"})
    assert amqp.result_backend is None


def test_the_seeds_queue_backend_variables_select_redis() -> None:
    settings = Settings.from_env({"QUEUE_BACKEND": "redis", "REDIS_URL": "redis://q:6379/1"})
    assert settings.broker_url == "redis://q:6379/1"
    assert Settings.from_env({"QUEUE_BACKEND": "memory", "REDIS_URL": "redis://q"}).embedded


def test_workflow_modules_are_a_comma_separated_list() -> None:
    settings = Settings.from_env({"DAGFLOW_WORKFLOWS": " a.b, c ,,"})
    assert settings.workflow_modules == ("a.b", "c")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCHED_TICK_MS": "fast"}, "SCHED_TICK_MS='fast' is not an integer"),
        ({"SCHED_MAX_PARALLEL": "0"}, "SCHED_MAX_PARALLEL=0 must be >= 1"),
        ({"DAGFLOW_RETRY_BASE_S": "x"}, "DAGFLOW_RETRY_BASE_S='x' is not a number"),
        ({"DAGFLOW_RETRY_JITTER": "2"}, "DAGFLOW_RETRY_JITTER=2.0 must be between 0 and 1"),
        ({"DAGFLOW_LEASE_S": "0.1"}, "DAGFLOW_LEASE_S=0.1 must be >= 0.5"),
        ({"DAGFLOW_SWEEP_S": "soon"}, "DAGFLOW_SWEEP_S='soon' is not a number"),
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_retry_delays_may_exceed_the_visibility_timeout() -> None:
    # Retries are durable in the run store now, not Celery ETA messages held in memory.
    assert Settings.from_env({"DAGFLOW_RETRY_MAX_S": "86400"}).retry_max_s == 86400


@pytest.mark.parametrize(
    ("broker", "backend", "expected"),
    [
        (None, None, None),
        ("redis://b:6379/0", None, "redis://b:6379/0"),
        ("redis://b:6379/0", "redis://r:6379/1", "redis://r:6379/1"),
        ("amqp://guest@h//", "redis://r:6379/1", "redis://r:6379/1"),
        ("amqp://guest@h//", None, None),
        ("redis://b:6379/0", "rpc://", "redis://b:6379/0"),
    ],
)
def test_the_run_stores_redis_is_the_backends_else_the_brokers(
    broker: str | None, backend: str | None, expected: str | None
) -> None:
    assert Settings(broker_url=broker, result_backend=backend).redis_url == expected


def test_no_redis_url_is_one_config_error_for_what_needs_it() -> None:
    with pytest.raises(ConfigError, match="dagflow keeps run state in Redis"):
        Settings(broker_url="amqp://guest@h//").require_redis_url()


@pytest.mark.parametrize(
    ("broker", "sink", "expected"),
    [
        ("redis://b:6379/0", "stream", True),
        ("redis://b:6379/0", "file", False),
        (None, "stream", False),
    ],
)
def test_events_go_through_the_stream_only_with_a_broker(
    broker: str | None, sink: str, expected: bool
) -> None:
    assert Settings(broker_url=broker, events_sink=sink).events_via_stream is expected
