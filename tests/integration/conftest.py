"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagflow.stores import MemoryRunStore, RedisRunStore, RunStore


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_db: str) -> Iterator[RunStore]:
    """A run store of each kind, for the contract tests: the in-memory twin and Redis (the
    session's private server)."""
    if request.param == "memory":
        yield MemoryRunStore()
        return
    yield RedisRunStore(redis_db, ttl=600)
