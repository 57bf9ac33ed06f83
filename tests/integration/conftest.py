"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagflow.stores import MemoryRunStore, RedisRunStore, RunStore


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[RunStore]:
    """A run store of each kind, for the contract tests: the in-memory twin and Redis.

    Redis is the scratch database, empty for each test: on the session's database a session
    worker's sweeper could sweep a test's due entries before the test's own sweep does.
    """
    if request.param == "memory":
        yield MemoryRunStore()
        return
    yield RedisRunStore(request.getfixturevalue("scratch_redis"), ttl=600)
