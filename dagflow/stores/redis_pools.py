"""Pools on Redis: acquire, release and sweep, each one atomic Lua script.

See :mod:`dagflow.stores.pools` for the contract and :mod:`dagflow.keys` for the keys. The
scripts read the run store's keys of the step (its state, its lease, its run's ``status``
and ``cancelled`` flags) in the same atomic step, and compare times with Redis's own clock.
"""

from __future__ import annotations

from typing import Any

import redis

from dagflow.keys import POOL_PREFIX, POOLS, RUN_PREFIX, pool_key, split_member, step_member
from dagflow.stores.pools import PoolGrant, PoolSweep, PoolUse, Step

# ARGV[1] is always the pool key prefix, ARGV[2] the run key prefix.
_LIB = """
local PP, RP = ARGV[1], ARGV[2]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pk(pool, part) return PP .. pool .. ':' .. part end
local function rk(run, part) return RP .. '{' .. run .. '}:' .. part end
local function split(m) return string.match(m, '^([^\\t]*)\\t(.*)$') end
-- The step's state ('over': ended, or its run is gone or done) and whether its run is cancelled.
local function step_state(m)
  local run, task = split(m)
  local s = redis.call('HGET', rk(run, 'states'), task)
  if not s or s == 'ok' or s == 'failed' or s == 'skipped' or s == 'cancelled' then
    return 'over', false
  end
  if redis.call('HEXISTS', rk(run, 'meta'), 'status') == 1 then return 'over', false end
  return s, redis.call('HEXISTS', rk(run, 'meta'), 'cancelled') == 1
end
-- True if the step's lease (claims: token, fence, worker, expires_ms, fails) is live.
local function lease_live(m, now)
  local run, task = split(m)
  local raw = redis.call('HGET', rk(run, 'claims'), task)
  if not raw then return false end
  local f = {}
  for part in string.gmatch(raw .. '\\t', '([^\\t]*)\\t') do f[#f + 1] = part end
  return (f[1] or '') ~= '' and (tonumber(f[4]) or 0) > now
end
-- Give free slots to parked steps, tenants in turn (a tenant served goes to the back),
-- each tenant's oldest first; parked steps that can no longer run are dropped.
local function wake(pool, size, now)
  local holders, tenants = pk(pool, 'holders'), pk(pool, 'tenants')
  local out, budget = {}, 1000
  while redis.call('ZCARD', holders) < size and budget > 0 do
    local line = redis.call('LRANGE', tenants, 0, -1)
    if #line == 0 then break end
    local moved = false
    for _, tenant in ipairs(line) do
      if redis.call('ZCARD', holders) >= size then break end
      local queue = pk(pool, 'queue:' .. tenant)
      local got = nil
      while budget > 0 do
        local m = redis.call('LPOP', queue)
        if not m then break end
        budget = budget - 1
        redis.call('HDEL', pk(pool, 'parked'), m)
        local s, cancelled = step_state(m)
        if s ~= 'over' and not cancelled then got = m; break end
      end
      redis.call('LREM', tenants, 1, tenant)
      if redis.call('LLEN', queue) > 0 then redis.call('RPUSH', tenants, tenant) end
      if got then
        redis.call('ZADD', holders, now, got)
        redis.call('HSET', pk(pool, 'woken'), got, '1')
        out[#out + 1] = got
        moved = true
      end
    end
    if not moved then break end
  end
  return out
end
"""

# KEYS: POOLS   ARGV: pool prefix, run prefix, pool, size, member, tenant
# Returns {'pass'}, {'granted', woken...} or {'parked', woken...}.
ACQUIRE = (
    _LIB
    + """
local pool, size, m, tenant = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local now = now_ms()
redis.call('HSET', KEYS[1], pool, size)
local s, cancelled = step_state(m)
if s == 'over' or cancelled then return {'pass'} end
local holders, parked = pk(pool, 'holders'), pk(pool, 'parked')
if redis.call('ZSCORE', holders, m) then
  redis.call('HDEL', pk(pool, 'woken'), m)
  redis.call('ZADD', holders, now, m)
  return {'granted'}
end
if redis.call('HEXISTS', parked, m) == 1 then return {'parked'} end
local woken = {}
if redis.call('ZCARD', holders) < size and redis.call('HLEN', parked) > 0 then
  woken = wake(pool, size, now)
end
local verdict = 'parked'
if redis.call('ZCARD', holders) < size and redis.call('HLEN', parked) == 0 then
  redis.call('ZADD', holders, now, m)
  verdict = 'granted'
else
  redis.call('HSET', parked, m, tenant)
  redis.call('RPUSH', pk(pool, 'queue:' .. tenant), m)
  if not redis.call('LPOS', pk(pool, 'tenants'), tenant) then
    redis.call('RPUSH', pk(pool, 'tenants'), tenant)
  end
end
local result = {verdict}
for _, w in ipairs(woken) do result[#result + 1] = w end
return result
"""
)

# KEYS: POOLS   ARGV: pool prefix, run prefix, pool, member.   Returns the steps woken.
RELEASE = (
    _LIB
    + """
local pool, m = ARGV[3], ARGV[4]
local s = step_state(m)
if s == 'running' then return {} end
redis.call('ZREM', pk(pool, 'holders'), m)
redis.call('HDEL', pk(pool, 'woken'), m)
return wake(pool, tonumber(redis.call('HGET', KEYS[1], pool) or '0'), now_ms())
"""
)

# KEYS: POOLS   ARGV: pool prefix, run prefix, stale_ms
# Returns {freed, n_woken, woken..., resent...}.
SWEEP = (
    _LIB
    + """
local now, stale = now_ms(), tonumber(ARGV[3])
local freed, woken, resent = 0, {}, {}
for _, pool in ipairs(redis.call('HKEYS', KEYS[1])) do
  local holders, wokenh = pk(pool, 'holders'), pk(pool, 'woken')
  local members = redis.call('ZRANGE', holders, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local m, since = members[i], tonumber(members[i + 1])
    local s, cancelled = step_state(m)
    local free = false
    if s == 'over' then
      free = true
    elseif s == 'running' then
      free = not lease_live(m, now)
    elseif cancelled then
      free = true
    elseif since <= now - stale then
      if redis.call('HEXISTS', wokenh, m) == 1 then
        redis.call('ZADD', holders, now, m)
        resent[#resent + 1] = m
      else
        free = true
      end
    end
    if free then
      redis.call('ZREM', holders, m)
      redis.call('HDEL', wokenh, m)
      freed = freed + 1
    end
  end
  local size = tonumber(redis.call('HGET', KEYS[1], pool) or '0')
  for _, w in ipairs(wake(pool, size, now)) do woken[#woken + 1] = w end
end
local result = {freed, #woken}
for _, w in ipairs(woken) do result[#result + 1] = w end
for _, r in ipairs(resent) do result[#result + 1] = r end
return result
"""
)


def _steps(members: list[Any]) -> tuple[Step, ...]:
    return tuple(split_member(str(m)) for m in members)


class RedisPools:
    """A :class:`~dagflow.stores.pools.PoolStore` on the run store's Redis.

    Args:
        client: A client of the run store's Redis (``decode_responses=True``): the scripts
            read the run store's keys.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._sweep = client.register_script(SWEEP)

    def acquire(self, pool: str, size: int, run_id: str, task_id: str, tenant: str) -> PoolGrant:
        """Take a slot, or park the step (see the contract)."""
        member = step_member(run_id, task_id)
        args: list[str | int] = [POOL_PREFIX, RUN_PREFIX, pool, size, member, tenant]
        raw = self._acquire(keys=[POOLS], args=args)
        return PoolGrant(str(raw[0]), _steps(raw[1:]))  # type: ignore[arg-type]

    def release(self, pool: str, run_id: str, task_id: str) -> tuple[Step, ...]:
        """Free the step's slot unless another delivery runs it; return the steps woken."""
        args = [POOL_PREFIX, RUN_PREFIX, pool, step_member(run_id, task_id)]
        return _steps(self._release(keys=[POOLS], args=args))

    def sweep(self, stale_s: float) -> PoolSweep:
        """Free dead holders' slots, wake parked steps, re-send woken ones that are late."""
        raw = self._sweep(keys=[POOLS], args=[POOL_PREFIX, RUN_PREFIX, int(stale_s * 1000)])
        n_woken = int(raw[1])
        return PoolSweep(int(raw[0]), _steps(raw[2 : 2 + n_woken]), _steps(raw[2 + n_woken :]))

    def usage(self) -> dict[str, PoolUse]:
        """Each pool's size, slots in use and parked steps."""
        sizes = {str(k): int(v) for k, v in self.client.hgetall(POOLS).items()}
        pools = sorted(sizes)
        pipe = self.client.pipeline(transaction=False)
        for pool in pools:
            pipe.zcard(pool_key(pool, "holders"))
            pipe.hlen(pool_key(pool, "parked"))
        counts = pipe.execute() if pools else []
        return {
            pool: PoolUse(sizes[pool], int(counts[2 * i]), int(counts[2 * i + 1]))
            for i, pool in enumerate(pools)
        }

    def parked(self, pool: str, run_id: str, task_ids: list[str]) -> list[str]:
        """Those of ``task_ids`` parked for a slot of ``pool``."""
        if not task_ids:
            return []
        found = self.client.hmget(
            pool_key(pool, "parked"), [step_member(run_id, t) for t in task_ids]
        )
        return [t for t, f in zip(task_ids, found, strict=True) if f is not None]


__all__ = ["RedisPools"]
