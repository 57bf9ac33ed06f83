"""Claims on ``{event, event id, DAG}``: one run per event id and DAG, however often it is sent.

A producer that retries ``dagflow trigger`` (or ``POST /api/v1/events/NAME``) after a timeout
cannot know whether its first call started the runs. Each call therefore *claims* the
triple for the run id it would start: with Redis, one ``SET key run_id NX EX ttl`` in a Lua
script that returns the holder, so any number of concurrent calls on any host agree on one
winner and every loser learns the winner's run id. The winner starts the run; a call that
fails to start it gives the claim back (:meth:`EventClaims.release`, only if it still holds
it) so a retry can try again.

:class:`MemoryEventClaims` is the in-process twin, tested by the same contract.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from dagflow.keys import trigger_key
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.stores.transport import sealed

#: KEYS[1] the claim; ARGV[1] the token, ARGV[2] ttl (s). Returns the holder's token.
_CLAIM_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
"""
#: KEYS[1] the claim; ARGV[1] the token. Deletes it only if that token still holds it.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class EventClaims(Protocol):
    """Where trigger calls race for ``{event, event id, DAG}``."""

    def claim(self, event: str, event_id: str, dag_name: str, token: str, ttl_s: int) -> str:
        """Claim the triple for ``token`` for ``ttl_s`` seconds unless it is held; return the
        holder's token (``token`` itself when this call won)."""
        ...

    def release(self, event: str, event_id: str, dag_name: str, token: str) -> None:
        """Drop the claim if ``token`` still holds it (its run could not start)."""
        ...


class RedisEventClaims:
    """EventClaims in Redis, atomic across processes and hosts.

    Args:
        client: A redis-py client created with ``decode_responses=True``.
        url: The URL, for errors (password hidden by :func:`sealed`).
    """

    def __init__(self, client: Any, url: str = "redis") -> None:
        self.client = client
        self.url = url
        self._claim = client.register_script(_CLAIM_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    @classmethod
    def from_url(cls, url: str, *, master_name: str = DEFAULT_MASTER_NAME) -> RedisEventClaims:
        """Connect to the Redis at ``url`` (the run store's; ``master_name`` for Sentinel)."""
        return cls(redis_client(url, master_name=master_name, decode_responses=True), url)

    def claim(self, event: str, event_id: str, dag_name: str, token: str, ttl_s: int) -> str:
        """See :meth:`EventClaims.claim`."""
        with sealed(self.url):
            holder = self._claim(keys=[trigger_key(event, event_id, dag_name)], args=[token, ttl_s])
        return str(holder)

    def release(self, event: str, event_id: str, dag_name: str, token: str) -> None:
        """See :meth:`EventClaims.release`."""
        with sealed(self.url):
            self._release(keys=[trigger_key(event, event_id, dag_name)], args=[token])

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class MemoryEventClaims:
    """EventClaims held in this process (tests, and the twin of :class:`RedisEventClaims`).

    Args:
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._claims: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def claim(self, event: str, event_id: str, dag_name: str, token: str, ttl_s: int) -> str:
        """See :meth:`EventClaims.claim`."""
        key = trigger_key(event, event_id, dag_name)
        now = self.clock()
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[1] > now:
                return held[0]
            self._claims[key] = (token, now + ttl_s)
            return token

    def release(self, event: str, event_id: str, dag_name: str, token: str) -> None:
        """See :meth:`EventClaims.release`."""
        key = trigger_key(event, event_id, dag_name)
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[0] == token:
                del self._claims[key]
