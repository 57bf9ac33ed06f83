"""Where backfills are kept: their document (JSON) and their cancel flag.

A backfill (:mod:`dagflow.scheduling.backfill`) is written by the process that runs it, as
it goes, and read by whoever cancels it. The cancel flag is a key of its own, so the
runner's next save of the document can never overwrite a cancel made meanwhile; the runner
looks at the flag before each minute it starts.

:class:`MemoryBackfillStore` is the in-process twin, tested by the same contract.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, cast

from dagflow.keys import backfill_key
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.stores.transport import sealed


class BackfillStore(Protocol):
    """The backfills of a deployment."""

    def save(self, backfill_id: str, document: str, ttl_s: int) -> None:
        """Write the backfill's document (JSON), kept ``ttl_s`` seconds."""
        ...

    def load(self, backfill_id: str) -> str | None:
        """The backfill's document, or None if unknown or expired."""
        ...

    def cancel(self, backfill_id: str, ttl_s: int) -> None:
        """Flag the backfill cancelled (kept ``ttl_s`` seconds)."""
        ...

    def cancelled(self, backfill_id: str) -> bool:
        """True once :meth:`cancel` was called for the backfill."""
        ...


class RedisBackfillStore:
    """Backfills in Redis (keys in :mod:`dagflow.keys`).

    Args:
        client: A redis-py client created with ``decode_responses=True``.
        url: The URL, for errors (password hidden).
    """

    def __init__(self, client: Any, url: str = "redis") -> None:
        self.client = client
        self.url = url

    @classmethod
    def from_url(cls, url: str, *, master_name: str = DEFAULT_MASTER_NAME) -> RedisBackfillStore:
        """Connect to the Redis at ``url`` (the run store's)."""
        return cls(redis_client(url, master_name=master_name, decode_responses=True), url)

    def save(self, backfill_id: str, document: str, ttl_s: int) -> None:
        """See :meth:`BackfillStore.save`."""
        with sealed(self.url):
            self.client.set(backfill_key(backfill_id), document, ex=ttl_s)

    def load(self, backfill_id: str) -> str | None:
        """See :meth:`BackfillStore.load`."""
        with sealed(self.url):
            return cast(str | None, self.client.get(backfill_key(backfill_id)))

    def cancel(self, backfill_id: str, ttl_s: int) -> None:
        """See :meth:`BackfillStore.cancel`."""
        with sealed(self.url):
            self.client.set(f"{backfill_key(backfill_id)}:cancelled", "1", ex=ttl_s)

    def cancelled(self, backfill_id: str) -> bool:
        """See :meth:`BackfillStore.cancelled`."""
        with sealed(self.url):
            return bool(self.client.exists(f"{backfill_key(backfill_id)}:cancelled"))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class MemoryBackfillStore:
    """Backfills in this process (the twin of :class:`RedisBackfillStore`; no expiry)."""

    def __init__(self) -> None:
        self._documents: dict[str, str] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def save(self, backfill_id: str, document: str, ttl_s: int) -> None:
        """See :meth:`BackfillStore.save`."""
        with self._lock:
            self._documents[backfill_id] = document

    def load(self, backfill_id: str) -> str | None:
        """See :meth:`BackfillStore.load`."""
        with self._lock:
            return self._documents.get(backfill_id)

    def cancel(self, backfill_id: str, ttl_s: int) -> None:
        """See :meth:`BackfillStore.cancel`."""
        with self._lock:
            self._cancelled.add(backfill_id)

    def cancelled(self, backfill_id: str) -> bool:
        """See :meth:`BackfillStore.cancelled`."""
        with self._lock:
            return backfill_id in self._cancelled
