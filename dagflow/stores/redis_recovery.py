"""The sweeper's side of the Redis run store: one sweep script over the lease and outbox
indexes, and the small writes the sweeper makes (touch, forget, requeue, a lock).

:class:`~dagflow.stores.redis.RedisRunStore` inherits them; the in-memory twin is
:class:`~dagflow.stores.memory_recovery.MemoryRecovery`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from dagflow.keys import (
    LEASES,
    LOCK_PREFIX,
    OUTBOX,
    OUTBOX_RESENDS,
    RUN_INDEX,
    RUN_PREFIX,
    RUNS,
    step_member,
)
from dagflow.stores.base import SweepResult
from dagflow.stores.redis_scripts import LIB


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


# KEYS: LEASES, OUTBOX, OUTBOX_RESENDS, RUNS   ARGV: limit, grace_ms, idle_ms, run key prefix
# Steps of a cancelled run are never re-sent: the run is reported in its own list instead.
SWEEP = (
    LIB
    + """
local now = now_ms()
local limit, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local function key(run, part) return ARGV[4] .. '{' .. run .. '}:' .. part end
local expired = {}
local cancelled = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], m)
  local run, task = string.match(m, '^([^\\t]*)\\t(.*)$')
  local token, fence, worker, expires = parse(redis.call('HGET', key(run, 'claims'), task))
  if token ~= '' and expires > 0 and expires <= now
      and redis.call('HGET', key(run, 'states'), task) == 'running' then
    if redis.call('HEXISTS', key(run, 'meta'), 'cancelled') == 1 then
      cancelled[run] = true
    else
      redis.call('ZADD', KEYS[2], now, m)
      table.insert(expired, {run, task, worker, fence})
    end
  end
end
local due = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  local run, task = string.match(m, '^([^\\t]*)\\t(.*)$')
  local s = redis.call('HGET', key(run, 'states'), task)
  local live = false
  if s == 'running' then
    local token, fence, worker, expires = parse(redis.call('HGET', key(run, 'claims'), task))
    live = token ~= '' and expires > now
  end
  local stop = s and redis.call('HEXISTS', key(run, 'meta'), 'cancelled') == 1
  if stop then cancelled[run] = true end
  if (not s) or terminal(s) or live or stop then
    redis.call('ZREM', KEYS[2], m)
    redis.call('HDEL', KEYS[3], m)
  else
    local n = redis.call('HINCRBY', KEYS[3], m, 1)
    redis.call('ZADD', KEYS[2], now + grace * math.pow(2, math.min(n - 1, 5)), m)
    table.insert(due, {run, task})
  end
end
local idle_before = now - tonumber(ARGV[3])
local idle = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', idle_before, 'LIMIT', 0, limit)
local result = {#expired}
for _, e in ipairs(expired) do
  for _, v in ipairs(e) do table.insert(result, v) end
end
table.insert(result, #due)
for _, d in ipairs(due) do
  table.insert(result, d[1])
  table.insert(result, d[2])
end
local stopped = {}
for run, _ in pairs(cancelled) do table.insert(stopped, run) end
table.insert(result, #stopped)
for _, r in ipairs(stopped) do table.insert(result, r) end
for _, r in ipairs(idle) do table.insert(result, r) end
return result
"""
)


class RedisRecovery:
    """Sweep and the sweeper's writes (mixed into the Redis run store)."""

    client: redis.Redis
    _sweep: Any
    #: The Redis server's clock, in ms (the store's own).
    _now_ms: Callable[[], int]

    def _recovery_scripts(self) -> None:
        self._sweep = self.client.register_script(SWEEP)

    def sweep(self, limit: int, grace_s: float, idle_s: float) -> SweepResult:
        """Run the sweep script (see :class:`~dagflow.stores.base.SweepResult`)."""
        keys = [LEASES, OUTBOX, OUTBOX_RESENDS, RUNS]
        args: list[str | int] = [limit, _ms(grace_s), _ms(idle_s), RUN_PREFIX]
        raw = self._sweep(keys=keys, args=args)
        n_exp = int(raw[0])
        expired = tuple(
            (str(raw[1 + 4 * i]), str(raw[2 + 4 * i]), str(raw[3 + 4 * i]), int(raw[4 + 4 * i]))
            for i in range(n_exp)
        )
        at = 1 + 4 * n_exp
        n_due = int(raw[at])
        due = tuple((str(raw[at + 1 + 2 * i]), str(raw[at + 2 + 2 * i])) for i in range(n_due))
        at += 1 + 2 * n_due
        n_cancelled = int(raw[at])
        cancelled = tuple(str(r) for r in raw[at + 1 : at + 1 + n_cancelled])
        idle = tuple(str(r) for r in raw[at + 1 + n_cancelled :])
        return SweepResult(expired=expired, due=due, idle_runs=idle, cancelled_runs=cancelled)

    def touch(self, run_id: str) -> None:
        """ZADD XX the run's last-moved time to now."""
        self.client.zadd(RUNS, {run_id: self._now_ms()}, xx=True)

    def forget(self, run_id: str) -> None:
        """Drop a run whose state is gone from the sweeper's index."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(RUNS, run_id)
        pipe.hdel(RUN_INDEX, run_id)
        pipe.execute()

    def requeue(self, run_id: str, task_ids: Sequence[str]) -> None:
        """Put ``task_ids`` in the outbox, due now."""
        if task_ids:
            now_ms = self._now_ms()
            self.client.zadd(OUTBOX, {step_member(run_id, t): now_ms for t in task_ids})
            self.client.zadd(RUNS, {run_id: now_ms}, xx=True)

    def try_lock(self, name: str, holder: str, ttl_s: float) -> bool:
        """SET NX PX: the lock is held until it expires (no release needed)."""
        return bool(self.client.set(f"{LOCK_PREFIX}{name}", holder, nx=True, px=_ms(ttl_s)))
