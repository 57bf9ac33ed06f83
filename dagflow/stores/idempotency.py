"""Idempotency keys of ``POST /api/v1/runs``: the same key starts one run, however often and
however concurrently it is sent.

The first request with a key claims it with ``SET key value NX EX ttl`` (inside a Lua script
that returns the holder's value when the claim is lost, so the claim and the read are one
atomic step) and starts the run under the run id it claimed with; every other request with
that key reads the same run id. The value is ``<run_id>\\t<fingerprint>``: the fingerprint
(a hash of the DAG and params) lets the API refuse a key reused for a different request. A
claim whose run could not be started is released (compare-and-delete), so a retry of the
request can start it. Keys are scoped by tenant and expire after ``ttl`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dagflow.keys import idempotency_key
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client

#: KEYS[1] the key; ARGV[1] the value, ARGV[2] the ttl in seconds. Returns {1, value} when
#: this caller claimed the key, else {0, the holder's value}.
_CLAIM_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {1, ARGV[1]}
end
return {0, redis.call('GET', KEYS[1])}
"""
#: KEYS[1] the key; ARGV[1] the value this caller claimed it with. Deletes it only if it
#: still holds that value.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class KeyClaim:
    """The outcome of a claim.

    Attributes:
        won: True when this caller claimed the key (it must start the run, or release it).
        run_id: The run the key stands for.
        fingerprint: The fingerprint of the request that claimed it.
    """

    won: bool
    run_id: str
    fingerprint: str


def _value(run_id: str, fingerprint: str) -> str:
    return f"{run_id}\t{fingerprint}"


def _claim(won: bool, value: str) -> KeyClaim:
    run_id, _, fingerprint = value.partition("\t")
    return KeyClaim(won, run_id, fingerprint)


class IdempotencyKeys(Protocol):
    """Where idempotency keys are claimed (see the module docstring)."""

    def claim(self, tenant: str, key: str, run_id: str, fingerprint: str, ttl_s: int) -> KeyClaim:
        """Claim ``key`` of ``tenant`` for ``run_id``, or read who holds it (atomically)."""
        ...

    def release(self, tenant: str, key: str, run_id: str, fingerprint: str) -> None:
        """Drop a claim this caller won, if it still holds it (its run did not start)."""
        ...


class MemoryIdempotencyKeys:
    """:class:`IdempotencyKeys` in this process (the twin of :class:`RedisIdempotencyKeys`).

    Args:
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def claim(self, tenant: str, key: str, run_id: str, fingerprint: str, ttl_s: int) -> KeyClaim:
        """See :meth:`IdempotencyKeys.claim`."""
        now = self.clock()
        with self._lock:
            held = self._keys.get((tenant, key))
            if held is not None and held[1] > now:
                return _claim(False, held[0])
            value = _value(run_id, fingerprint)
            self._keys[(tenant, key)] = (value, now + ttl_s)
            return _claim(True, value)

    def release(self, tenant: str, key: str, run_id: str, fingerprint: str) -> None:
        """See :meth:`IdempotencyKeys.release`."""
        with self._lock:
            held = self._keys.get((tenant, key))
            if held is not None and held[0] == _value(run_id, fingerprint):
                del self._keys[(tenant, key)]


class RedisIdempotencyKeys:
    """:class:`IdempotencyKeys` in Redis: atomic across every ``dagflow api`` process.

    Args:
        client: A redis-py client created with ``decode_responses=True``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._claim = client.register_script(_CLAIM_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    @classmethod
    def from_url(cls, url: str, *, master_name: str = DEFAULT_MASTER_NAME) -> RedisIdempotencyKeys:
        """Connect to the Redis at ``url`` (``master_name`` for Sentinel)."""
        return cls(redis_client(url, master_name=master_name, decode_responses=True))

    def claim(self, tenant: str, key: str, run_id: str, fingerprint: str, ttl_s: int) -> KeyClaim:
        """See :meth:`IdempotencyKeys.claim`: one script call."""
        won, value = self._claim(
            keys=[idempotency_key(tenant, key)], args=[_value(run_id, fingerprint), ttl_s]
        )
        return _claim(bool(won), str(value or ""))

    def release(self, tenant: str, key: str, run_id: str, fingerprint: str) -> None:
        """See :meth:`IdempotencyKeys.release`."""
        self._release(keys=[idempotency_key(tenant, key)], args=[_value(run_id, fingerprint)])
