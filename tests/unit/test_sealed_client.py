"""Stores keep their transport to themselves: every dagflow Redis client raises
:class:`~dagflow.errors.StoreUnavailable` (a ``DagflowError`` naming the URL, password
hidden) when Redis cannot be reached or does not answer, never redis-py's own errors.

No server is needed: the tests talk to a port nobody listens on, and to a socket that
accepts and never answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from dagflow.errors import DagflowError, StoreUnavailable
from dagflow.redis_url import redis_client
from dagflow.stores.redis import RedisRunStore


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def _assert_sealed(error: BaseException, url_shown: str, cause: type[BaseException]) -> None:
    assert isinstance(error, StoreUnavailable) and isinstance(error, DagflowError)
    assert str(error).startswith(f"cannot reach {url_shown}: ")
    assert isinstance(error.__cause__, cause)
    assert "s3cret" not in str(error)


def test_a_command_to_a_closed_port_raises_store_unavailable_naming_the_url() -> None:
    port = _closed_port()
    client = redis_client(f"redis://:s3cret@127.0.0.1:{port}/0")
    with pytest.raises(StoreUnavailable) as caught:
        client.get("x")
    _assert_sealed(caught.value, f"redis://:**@127.0.0.1:{port}/0", redis.ConnectionError)


@pytest.mark.parametrize("transaction", [True, False])
def test_a_pipeline_to_a_closed_port_raises_store_unavailable(transaction: bool) -> None:
    port = _closed_port()
    pipe = redis_client(f"redis://127.0.0.1:{port}/1").pipeline(transaction=transaction)
    pipe.set("a", 1).incr("b")
    with pytest.raises(StoreUnavailable) as caught:
        pipe.execute()
    _assert_sealed(caught.value, f"redis://127.0.0.1:{port}/1", redis.ConnectionError)


def test_a_server_that_does_not_answer_raises_store_unavailable(silent_port: int) -> None:
    client = redis_client(f"redis://127.0.0.1:{silent_port}/0", socket_timeout=0.2)
    with pytest.raises(StoreUnavailable) as caught:
        client.ping()
    _assert_sealed(caught.value, f"redis://127.0.0.1:{silent_port}/0", redis.TimeoutError)


def test_a_run_stores_read_and_script_raise_store_unavailable() -> None:
    store = RedisRunStore(f"redis://127.0.0.1:{_closed_port()}/0")
    with pytest.raises(StoreUnavailable):
        store.snapshot("run-1")
    with pytest.raises(StoreUnavailable):
        store.claim("run-1", "a", "token-1")  # a Lua script
