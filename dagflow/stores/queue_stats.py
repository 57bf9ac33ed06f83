"""Queue statistics read from the Redis broker and result backend, for the dashboard's
queue panel (which reads them through this view, never with a Redis client of its own).

Pending messages are the lengths of the broker's queue lists (Celery's default queue is the
list ``celery``; kombu keeps priority levels in lists named ``<queue>\\x06\\x16<n>``). Task
results are the ``celery-task-meta-*`` keys of the result backend, counted by status. Both
are found with ``SCAN`` and a bounded number of calls, never ``KEYS``, so a busy Redis is
never blocked by the dashboard; a partial count is flagged as such.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from dagflow.errors import ConfigError
from dagflow.keys import is_dagflow_key, is_redis_url
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.stores.transport import BACKEND_ERRORS

#: What a panel shows as "Redis error" instead of failing: the store is down or misconfigured.
PANEL_ERRORS: tuple[type[BaseException], ...] = (*BACKEND_ERRORS, ValueError, ConfigError)

#: Keys asked for per SCAN call, and the most SCAN calls one refresh makes per database.
SCAN_COUNT = 500
MAX_SCAN_CALLS = 20
#: Seconds to wait for Redis before the panel shows an error instead.
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0
#: kombu's separator between a queue name and its priority level.
PRIORITY_SEP = "\x06\x16"
RESULT_PREFIX = "celery-task-meta-"

NO_BROKER = "Queue stats only available with a Redis broker (DAGFLOW_BROKER_URL)"


@dataclass(frozen=True)
class QueueStats:
    """What the queue panel shows from Redis.

    Attributes:
        queues: Pending messages per broker queue (priority levels summed into their queue).
        results: Result-backend tasks per Celery state (``SUCCESS``, ``FAILURE``, ...).
        truncated: True if a SCAN stopped at :data:`MAX_SCAN_CALLS` (the counts are partial).
        error: Why Redis could not be read, or None.
        collector_behind: Events in the stream the collector has not written yet (None when
            events do not go through the stream).
        collector_lag_s: Age of the oldest of them, in seconds.
        waiting: Runs waiting for a ``max_active_runs`` slot, per tenant (None when the
            run store could not be read).
        pools: Each pool's use: ``(in use, size, waiting)`` (None when the run store could
            not be read; empty when no pool was ever used).
    """

    queues: dict[str, int] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    error: str | None = None
    collector_behind: int | None = None
    collector_lag_s: float | None = None
    waiting: dict[str, int] | None = None
    pools: dict[str, tuple[int, int, int]] | None = None

    @property
    def pending(self) -> int:
        """Messages waiting in all queues."""
        return sum(self.queues.values())


def connect(url: str, master_name: str = DEFAULT_MASTER_NAME) -> redis.Redis:
    """Open a client with short timeouts, so a down Redis shows as a message, not a hang."""
    return redis_client(
        url,
        master_name=master_name,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
    )


def _scan(client: redis.Redis, match: str | None, kind: str | None) -> Iterator[bytes | str | None]:
    """Yield matching keys, then None if the scan was cut short by :data:`MAX_SCAN_CALLS`."""
    cursor = 0
    for _ in range(MAX_SCAN_CALLS):
        cursor, keys = client.scan(cursor=cursor, match=match, count=SCAN_COUNT, _type=kind)
        yield from keys
        if cursor == 0:
            return
    yield None


def _text(key: bytes | str) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def broker_queues(client: redis.Redis) -> tuple[dict[str, int], bool]:
    """Return pending messages per queue (list keys) and whether the scan was cut short.

    dagflow's own lists (a finished run's ``done`` list) are not queues and are left out.
    """
    queues: dict[str, int] = {"celery": 0}
    truncated = False
    for key in _scan(client, None, "list"):
        if key is None:
            truncated = True
            break
        text = _text(key)
        if is_dagflow_key(text):
            continue  # a run's wake-up list, not a queue
        name = text.split(PRIORITY_SEP, 1)[0]
        queues[name] = queues.get(name, 0) + int(client.llen(key))
    return queues, truncated


def result_states(client: redis.Redis) -> tuple[dict[str, int], bool]:
    """Count ``celery-task-meta-*`` results by state; returns the counts and truncation."""
    counts: dict[str, int] = {}
    keys: list[bytes | str] = []
    truncated = False
    for key in _scan(client, RESULT_PREFIX + "*", None):
        if key is None:
            truncated = True
            break
        keys.append(key)
    for start in range(0, len(keys), SCAN_COUNT):
        for raw in client.mget(keys[start : start + SCAN_COUNT]):
            state = _state(raw)
            if state is not None:
                counts[state] = counts.get(state, 0) + 1
    return counts, truncated


def _state(raw: Any) -> str | None:
    if raw is None:
        return None  # expired between SCAN and MGET
    try:
        meta = json.loads(raw)
    except (ValueError, TypeError):
        return "UNKNOWN"
    return str(meta.get("status", "UNKNOWN")) if isinstance(meta, dict) else "UNKNOWN"


def redis_queue_stats(
    broker_url: str,
    backend_url: str | None = None,
    connector: Callable[[str], redis.Redis] | None = None,
    master_name: str = DEFAULT_MASTER_NAME,
) -> QueueStats:
    """Read pending messages from ``broker_url`` and result states from ``backend_url``.

    Never raises for Redis trouble: a connection or protocol error comes back in
    :attr:`QueueStats.error`, so the page still renders.

    Args:
        broker_url: The broker's Redis (or Sentinel) URL.
        backend_url: The result backend's, if it is Redis.
        connector: Opens a client for a URL (:func:`connect` with ``master_name`` if None).
        master_name: The Sentinel primary's name, for ``sentinel://`` URLs.
    """
    connector = connector or functools.partial(connect, master_name=master_name)
    try:
        broker = connector(broker_url)
        queues, truncated = broker_queues(broker)
        results: dict[str, int] = {}
        if is_redis_url(backend_url) and backend_url is not None:
            backend = broker if backend_url == broker_url else connector(backend_url)
            results, more = result_states(backend)
            truncated = truncated or more
    except PANEL_ERRORS as exc:
        return QueueStats(error=f"Redis error: {type(exc).__name__}: {exc}")
    return QueueStats(queues=queues, results=results, truncated=truncated)


def _store_client(url: str, master_name: str) -> redis.Redis:
    """A client of the run store with the panel's short timeouts, decoding replies."""
    return redis_client(
        url,
        master_name=master_name,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
    )


def with_collector_lag(
    stats: QueueStats | None, store_url: str, master_name: str = DEFAULT_MASTER_NAME
) -> QueueStats | None:
    """``stats`` plus how far behind the event collector is (read from the stream's group)
    and how many runs wait for a slot, per tenant (from the admission queues)."""
    import dataclasses
    import time

    from dagflow.events.collector import collector_lag
    from dagflow.keys import PENDING_TENANT_PREFIX, PENDING_TENANTS

    try:
        client = _store_client(store_url, master_name)
        try:
            lag = collector_lag(client, int(time.time() * 1000))
            tenants = [str(t) for t in client.lrange(PENDING_TENANTS, 0, -1)]
            pipe = client.pipeline(transaction=False)
            for tenant in tenants:
                pipe.llen(PENDING_TENANT_PREFIX + tenant)
            waiting = dict(zip(tenants, (int(n) for n in pipe.execute()), strict=True))
        finally:
            client.close()
    except PANEL_ERRORS:
        return stats
    base = stats if stats is not None else QueueStats(error=NO_BROKER)
    return dataclasses.replace(
        base,
        collector_behind=lag.entries,
        collector_lag_s=round(lag.seconds, 1),
        waiting={t: n for t, n in waiting.items() if n},
    )


def with_pools(
    stats: QueueStats | None, store_url: str, master_name: str = DEFAULT_MASTER_NAME
) -> QueueStats | None:
    """``stats`` plus each pool's use (in use, size, waiting), read from the run store."""
    import dataclasses

    from dagflow.stores.redis_pools import RedisPools

    try:
        client = _store_client(store_url, master_name)
        try:
            usage = RedisPools(client).usage()
        finally:
            client.close()
    except PANEL_ERRORS:
        return stats
    base = stats if stats is not None else QueueStats(error=NO_BROKER)
    pools = {name: (u.in_use, u.size, u.waiting) for name, u in usage.items()}
    return dataclasses.replace(base, pools=pools)
