"""One parser for Redis URLs: Sentinel URLs as kombu and Celery read them, clear errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from redis.sentinel import SentinelConnectionPool

from dagflow.celery_app import celery_settings
from dagflow.errors import ConfigError
from dagflow.keys import is_redis_url
from dagflow.redis_url import (
    SentinelUrl,
    is_sentinel_url,
    parse_sentinel_url,
    redis_client,
    same_redis,
    transport_options,
)
from dagflow.settings import Settings


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("sentinel://h1", SentinelUrl((("h1", 26379),))),
        ("sentinel://h1:26380/2", SentinelUrl((("h1", 26380),), db=2)),
        (
            "sentinel://h1:1;sentinel://h2:2;sentinel://h3",
            SentinelUrl((("h1", 1), ("h2", 2), ("h3", 26379))),
        ),
        (
            "sentinel://:s%40cret@h1:1/3;sentinel://:s%40cret@h2:2/3",
            SentinelUrl((("h1", 1), ("h2", 2)), db=3, password="s@cret"),
        ),
        (
            "sentinel://app:pw@h1:1/4;sentinel://h2:2",
            SentinelUrl((("h1", 1), ("h2", 2)), db=4, username="app", password="pw"),
        ),
        ("SENTINEL://h1:1;", SentinelUrl((("h1", 1),))),
    ],
    ids=["default-port", "db", "three", "password-in-every-part", "user-in-first", "trailing-sep"],
)
def test_a_sentinel_url_gives_the_sentinels_and_the_primarys_db_and_credentials(
    url: str, parsed: SentinelUrl
) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sentinel://h1:port", "the port is not a number"),
        ("sentinel://:26379", "the host is missing"),
        ("sentinel://h1:1/zero", "the database 'zero' is not a number"),
        ("sentinel://h1:1;redis://h2:2", "every part must be sentinel://host:port, not redis"),
        ("sentinel://h1:1?ssl=true", "options after '?' or '#' are not supported"),
        ("sentinel://h1:1;sentinel://h2:2/3", "names another database than the first"),
        ("sentinel://:a@h1:1;sentinel://:b@h2:2", "names another password than the first"),
    ],
)
def test_a_bad_sentinel_url_is_one_config_error_naming_its_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        Settings.from_env({"DAGFLOW_BROKER_URL": url})
    assert str(caught.value).startswith("DAGFLOW_BROKER_URL: ")
    assert "\n" not in str(caught.value)


def test_a_password_in_a_bad_part_is_not_printed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sentinel_url("sentinel://:hunter2@h1:x")
    assert "hunter2" not in str(caught.value) and ":***@" in str(caught.value)


def test_the_result_backends_url_is_checked_under_its_own_name() -> None:
    with pytest.raises(ConfigError, match=r"^DAGFLOW_RESULT_BACKEND: "):
        Settings.from_env(
            {"DAGFLOW_BROKER_URL": "redis://h", "DAGFLOW_RESULT_BACKEND": "sentinel://"}
        )


def test_sentinel_urls_are_redis_run_stores_and_the_backend_defaults_to_the_broker() -> None:
    url = "sentinel://h1:1;sentinel://h2:2/0"
    assert is_redis_url(url) and is_sentinel_url(url) and not is_sentinel_url("redis://h")
    settings = Settings.from_env({"DAGFLOW_BROKER_URL": url})
    assert (settings.result_backend, settings.redis_master_name) == (url, "mymaster")


def test_the_master_name_is_a_setting() -> None:
    env = {"DAGFLOW_BROKER_URL": "sentinel://h1", "DAGFLOW_REDIS_MASTER_NAME": "orders"}
    assert Settings.from_env(env).redis_master_name == "orders"
    with pytest.raises(ConfigError, match="DAGFLOW_REDIS_MASTER_NAME='my master'"):
        Settings.from_env({**env, "DAGFLOW_REDIS_MASTER_NAME": "my master"})


@pytest.mark.parametrize(
    ("broker", "backend", "expected"),
    [
        ("sentinel://h1;sentinel://h2", None, ({"master_name": "orders"},) * 2),
        ("redis://h/0", None, ({}, {})),
        ("amqp://guest@h//", "sentinel://h1/1", ({}, {"master_name": "orders"})),
    ],
)
def test_celery_gets_the_master_name_for_each_sentinel_url(
    broker: str, backend: str | None, expected: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    env = {"DAGFLOW_BROKER_URL": broker, "DAGFLOW_REDIS_MASTER_NAME": "orders"}
    conf = celery_settings(
        Settings.from_env(env | ({"DAGFLOW_RESULT_BACKEND": backend} if backend else {}))
    )
    for key, wanted in zip(
        ("broker_transport_options", "result_backend_transport_options"), expected, strict=True
    ):
        assert conf[key].get("visibility_timeout")  # celeryconfig's own options are kept
        assert {k: v for k, v in conf[key].items() if k == "master_name"} == wanted
    assert transport_options("redis://h", "x") == {}


def test_a_sentinel_client_opens_the_named_primary_through_every_sentinel() -> None:
    # Given a Sentinel URL (nothing listens there: opening a client connects to nothing)
    client = redis_client(
        "sentinel://:pw@127.0.0.1:1/5;sentinel://127.0.0.1:2",
        master_name="orders",
        decode_responses=True,
        socket_timeout=0.5,
    )
    try:
        # Then its pool asks the sentinels for "orders" and opens database 5 with the password
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "orders"
        assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (5, "pw")
        assert pool.connection_kwargs["decode_responses"] is True
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
        # the sentinels get the short timeouts, not the primary's password
        kwargs = sentinels[0].connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5 and kwargs.get("password") is None
    finally:
        client.close()


def test_other_urls_open_as_redis_py_opens_them_and_the_rest_is_refused() -> None:
    client = redis_client("redis://127.0.0.1:1/4", decode_responses=True)
    assert client.connection_pool.connection_kwargs["db"] == 4
    client.close()
    with pytest.raises(ConfigError, match="is not a Redis URL"):
        redis_client("amqp://guest@h//")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("redis://h/0", "redis://h/0", True),
        ("redis://h/0", "redis://h/1", False),
        ("sentinel://h1:1;sentinel://h2:2", "sentinel://h2:2;sentinel://h3:3", True),
        ("sentinel://h1:1/0;sentinel://h2:2", "sentinel://h1:1/1", False),
        ("sentinel://h1:1", "sentinel://h9:9", False),
        ("sentinel://h1:1", None, False),
    ],
)
def test_two_urls_are_the_same_redis_when_they_name_one_database(
    a: str, b: str | None, same: bool
) -> None:
    assert same_redis(a, b) is same
