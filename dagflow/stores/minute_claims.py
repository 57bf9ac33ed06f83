"""MinuteClaims on ``{schedule_id, minute}``: exactly one scheduler enqueues each firing.

Every scheduler process (Beat or ``--serve``, on any host) computes the same due minutes
and races to claim each one; the one that wins enqueues the run. With Redis the claim is a
``SET key run_id NX EX ttl`` run inside a Lua script, so it is atomic across any number of
processes with no leader to elect and nothing to fail over. The same script keeps a hash
``schedule_id -> last claimed minute`` that the catch-up after downtime starts from.

:class:`MemoryMinuteClaims` is the in-process twin for the embedded mode (no broker). It is
seeded from the state store's ``schedule_enqueued`` events, so a restarted scheduler still
does not enqueue the same minute twice; it cannot protect two processes from each other.

Minute keys are :func:`dagflow.scheduling.schedules.minute_key` strings, which sort in time order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from dagflow.keys import SCHED_PREFIX
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client

#: How long a claim is kept, in seconds. Processes that start together race for the same
#: minutes with it; a process that stalls longer first reads the last claimed minute, so
#: claims need not outlive a longer ``catchup_window`` (see dagflow.scheduling.ticker).
#: ``dagflow backfill`` keeps its own claims for ``DAGFLOW_RUN_TTL_S``.
CLAIM_TTL_S = 2 * 3600
#: Prefix of every Redis key the scheduler writes.
KEY_PREFIX = SCHED_PREFIX

#: MinuteClaims per script call: one call is atomic and blocks Redis while it runs, so a tick
#: with thousands of due schedules is cut into calls of a few milliseconds each.
CLAIM_BATCH = 1000

#: KEYS[1] last-claimed hash, KEYS[2..n+1] claim keys; ARGV[1] ttl, then for each claim
#: token, schedule id, minute key. Returns 1/0 per claim.
_CLAIM_LUA = """
local won = {}
for i = 2, #KEYS do
  local a = 2 + (i - 2) * 3
  if redis.call('SET', KEYS[i], ARGV[a], 'NX', 'EX', ARGV[1]) then
    local prev = redis.call('HGET', KEYS[1], ARGV[a + 1])
    if (not prev) or prev < ARGV[a + 2] then
      redis.call('HSET', KEYS[1], ARGV[a + 1], ARGV[a + 2])
    end
    won[i - 1] = 1
  else
    won[i - 1] = 0
  end
end
return won
"""

#: One claim attempt: (schedule id, minute key, token written as the claim's value).
MinuteClaim = tuple[str, str, str]


class MinuteClaims(Protocol):
    """Where scheduler processes race for ``{schedule_id, minute}``."""

    def claim_many(self, claims: Sequence[MinuteClaim]) -> list[bool]:
        """Try each claim; True where this caller won it (one round trip for all)."""
        ...

    def owner(self, schedule_id: str, minute: str) -> str | None:
        """The token of the claim on ``(schedule_id, minute)``, or None."""
        ...

    def last_claimed(self, schedule_ids: Sequence[str]) -> dict[str, str]:
        """The latest claimed minute of each schedule that was ever claimed."""
        ...


class RedisMinuteClaims:
    """MinuteClaims in Redis, atomic across processes and hosts.

    Args:
        client: A redis-py client created with ``decode_responses=True``.
        ttl_s: Seconds a claim key lives.
        prefix: Key prefix (tests use their own database instead).
    """

    def __init__(self, client: Any, ttl_s: int = CLAIM_TTL_S, prefix: str = KEY_PREFIX) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._script = client.register_script(_CLAIM_LUA)

    @classmethod
    def from_url(
        cls, url: str, *, master_name: str = DEFAULT_MASTER_NAME, **kwargs: Any
    ) -> RedisMinuteClaims:
        """Connect to the Redis at ``url`` (the broker's; ``master_name`` for Sentinel)."""
        return cls(redis_client(url, master_name=master_name, decode_responses=True), **kwargs)

    def _key(self, schedule_id: str, minute: str) -> str:
        return f"{self.prefix}:claim:{schedule_id}:{minute}"

    def claim_many(self, claims: Sequence[MinuteClaim]) -> list[bool]:
        """See :meth:`MinuteClaims.claim_many`: one script call per :data:`CLAIM_BATCH` claims."""
        won: list[bool] = []
        last = f"{self.prefix}:last"
        for start in range(0, len(claims), CLAIM_BATCH):
            batch = claims[start : start + CLAIM_BATCH]
            keys = [last, *(self._key(sid, minute) for sid, minute, _ in batch)]
            args: list[Any] = [self.ttl_s]
            for schedule_id, minute, token in batch:
                args += [token, schedule_id, minute]
            won += [bool(w) for w in self._script(keys=keys, args=args)]
        return won

    def owner(self, schedule_id: str, minute: str) -> str | None:
        """See :meth:`MinuteClaims.owner`."""
        value = self.client.get(self._key(schedule_id, minute))
        return None if value is None else str(value)

    def last_claimed(self, schedule_ids: Sequence[str]) -> dict[str, str]:
        """See :meth:`MinuteClaims.last_claimed`."""
        if not schedule_ids:
            return {}
        values = self.client.hmget(f"{self.prefix}:last", list(schedule_ids))
        return {sid: str(v) for sid, v in zip(schedule_ids, values, strict=True) if v}


class MemoryMinuteClaims:
    """MinuteClaims held in this process: the embedded mode's twin of :class:`RedisMinuteClaims`.

    Args:
        ttl_s: Seconds a claim lives.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(
        self, ttl_s: int = CLAIM_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}
        self._last: dict[str, str] = {}
        self._prune_at = 10_000
        self._lock = threading.Lock()

    def seed(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Claim what ``schedule_enqueued`` state events say was enqueued; return how many."""
        claims = [
            (str(e["schedule_id"]), str(e["scheduled_minute"]), str(e.get("run_id", "")))
            for e in events
            if e.get("event") == "schedule_enqueued"
            and e.get("schedule_id")
            and e.get("scheduled_minute")
        ]
        return sum(self.claim_many(claims))

    def claim_many(self, claims: Sequence[MinuteClaim]) -> list[bool]:
        """See :meth:`MinuteClaims.claim_many`."""
        now = self.clock()
        won = []
        with self._lock:
            for schedule_id, minute, token in claims:
                held = self._claims.get((schedule_id, minute))
                if held is not None and held[1] > now:
                    won.append(False)
                    continue
                self._claims[(schedule_id, minute)] = (token, now + self.ttl_s)
                if self._last.get(schedule_id, "") < minute:
                    self._last[schedule_id] = minute
                won.append(True)
            if len(self._claims) > self._prune_at:
                self._claims = {k: v for k, v in self._claims.items() if v[1] > now}
                self._prune_at = max(10_000, 2 * len(self._claims))
        return won

    def owner(self, schedule_id: str, minute: str) -> str | None:
        """See :meth:`MinuteClaims.owner`."""
        with self._lock:
            held = self._claims.get((schedule_id, minute))
        return held[0] if held is not None and held[1] > self.clock() else None

    def last_claimed(self, schedule_ids: Sequence[str]) -> dict[str, str]:
        """See :meth:`MinuteClaims.last_claimed`."""
        with self._lock:
            return {sid: self._last[sid] for sid in schedule_ids if sid in self._last}
