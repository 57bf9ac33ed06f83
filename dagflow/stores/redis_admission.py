"""Admission on Redis: slots, waiting runs and promotion, each one atomic Lua script.

See :mod:`dagflow.execution.admission` for the rules. A run's slots are members of one zset
per scope (``dagflow:slots:<scope>``); a waiting run sits in its tenant's list, with its slots in
:data:`~dagflow.keys.PENDING_RUNS`. A run is eligible for promotion only while its
metadata still says ``pending`` (a cancelled waiting run is dropped from its queue, never
started).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from dagflow.execution.admission import Slot
from dagflow.keys import (
    EVENTS_STREAM,
    OUTBOX,
    PENDING_RUNS,
    PENDING_TENANT_PREFIX,
    PENDING_TENANTS,
    RUN_INDEX,
    RUN_PREFIX,
    RUNS,
    RUNS_STARTED,
    SLOTS,
    SLOTS_WAITING,
    run_key,
)

# A run is waiting while its meta has 'pending' and no 'status'.
_WAITING = """
local function waiting(prefix, run)
  local meta = prefix .. '{' .. run .. '}:meta'
  return redis.call('HEXISTS', meta, 'pending') == 1 and redis.call('HEXISTS', meta, 'status') == 0
end
"""

# KEYS: waiting, pending runs, tenant queue, tenants, registry
# ARGV: run, tenant, now_ms, record JSON, n, then n (key, limit) pairs
ADMIT = """
local n = tonumber(ARGV[5])
local free = true
for i = 1, n do
  local key, limit = ARGV[4 + 2 * i], tonumber(ARGV[5 + 2 * i])
  if redis.call('ZSCORE', key, ARGV[1]) then return 1 end
  if redis.call('ZCARD', key) >= limit or tonumber(redis.call('HGET', KEYS[1], key) or '0') > 0 then
    free = false
  end
end
if free then
  for i = 1, n do
    redis.call('ZADD', ARGV[4 + 2 * i], ARGV[3], ARGV[1])
    redis.call('SADD', KEYS[5], ARGV[4 + 2 * i])
  end
  return 1
end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[4]) == 0 then return 0 end
for i = 1, n do redis.call('HINCRBY', KEYS[1], ARGV[4 + 2 * i], 1) end
redis.call('RPUSH', KEYS[3], ARGV[1])
if not redis.call('LPOS', KEYS[4], ARGV[2]) then redis.call('RPUSH', KEYS[4], ARGV[2]) end
return 0
"""

# KEYS: waiting, pending runs, tenants, registry
# ARGV: queue prefix, now_ms, max runs, scan depth, run key prefix
PROMOTE = (
    _WAITING
    + """
local promoted = {}
local max_n, depth = tonumber(ARGV[3]), tonumber(ARGV[4])
while #promoted < max_n do
  local moved = false
  -- A tenant that gets a slot goes to the back of the line; the others keep their place.
  for _, tenant in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    if #promoted >= max_n then break end
    local queue = ARGV[1] .. tenant
    local served = false
    for _, run in ipairs(redis.call('LRANGE', queue, 0, depth - 1)) do
      local raw = redis.call('HGET', KEYS[2], run)
      local slots = raw and cjson.decode(raw).slots or {}
      local alive = raw and waiting(ARGV[5], run)
      local go = alive
      if go then
        for _, s in ipairs(slots) do
          if redis.call('ZCARD', s[1]) >= tonumber(s[2]) then go = false; break end
        end
      end
      if go or not alive then
        redis.call('LREM', queue, 1, run)
        redis.call('HDEL', KEYS[2], run)
        for _, s in ipairs(slots) do
          if redis.call('HINCRBY', KEYS[1], s[1], -1) <= 0 then
            redis.call('HDEL', KEYS[1], s[1])
          end
          if go then
            redis.call('ZADD', s[1], ARGV[2], run)
            redis.call('SADD', KEYS[4], s[1])
          end
        end
        if go then
          promoted[#promoted + 1] = run
          served = true
          moved = true
          break
        end
      end
    end
    if redis.call('LLEN', queue) == 0 then
      redis.call('LREM', KEYS[3], 0, tenant)
    elseif served then
      redis.call('LREM', KEYS[3], 1, tenant)
      redis.call('RPUSH', KEYS[3], tenant)
    end
  end
  if not moved then break end
end
return promoted
"""
)

# KEYS: registry. ARGV: run key prefix, now_ms, stale_ms.
# Drops slots held by runs that ended or vanished; returns runs promoted but never started.
AUDIT = (
    _WAITING
    + """
local released, stuck = 0, {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local members = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local run, since = members[i], tonumber(members[i + 1])
    local meta = ARGV[1] .. '{' .. run .. '}:meta'
    if redis.call('EXISTS', meta) == 0 or redis.call('HEXISTS', meta, 'status') == 1 then
      redis.call('ZREM', key, run)
      released = released + 1
    elseif waiting(ARGV[1], run) and since <= tonumber(ARGV[2]) - tonumber(ARGV[3]) then
      redis.call('ZADD', key, ARGV[2], run)
      stuck[#stuck + 1] = run
    end
  end
  if redis.call('ZCARD', key) == 0 then redis.call('SREM', KEYS[1], key) end
end
return {released, stuck}
"""
)

# KEYS: meta, runs, run index, outbox, stream, runs by start time.
# ARGV: run, index value, started_at JSON, grace_ms, event line, maxlen, roots...
# The listing index takes the run's real start time, as its meta does (a cursor over the
# listing is built from the meta).
ACTIVATE = """
if redis.call('HEXISTS', KEYS[1], 'pending') == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'status') == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HDEL', KEYS[1], 'pending')
redis.call('HSET', KEYS[1], 'started_at', ARGV[3])
local started_ms = string.format('%.0f', math.floor(tonumber(ARGV[3]) * 1000))
redis.call('ZADD', KEYS[6], 'XX', started_ms, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
for i = 7, #ARGV do
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[1] .. '\\t' .. ARGV[i])
end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'log', 'events', 'data', ARGV[5])
end
return 1
"""

#: Waiting runs a promotion looks at per tenant (deeper ones wait for the head to move).
SCAN_DEPTH = 50


class RedisAdmission:
    """The admission half of :class:`~dagflow.stores.redis.RedisRunStore`."""

    client: redis.Redis
    events_maxlen: int | None

    #: The store's own (declared here so this half type-checks; a stub method here would
    #: shadow a sibling half's real one in the store's MRO).
    _event_line: Callable[[Mapping[str, Any] | None], str]

    def _admission_scripts(self) -> None:
        self._admit = self.client.register_script(ADMIT)
        self._promote = self.client.register_script(PROMOTE)
        self._audit = self.client.register_script(AUDIT)
        self._activate = self.client.register_script(ACTIVATE)

    def admit(self, run_id: str, tenant_id: str, slots: Sequence[Slot]) -> bool:
        """Take a slot of each scope now, or queue the run (False) behind its tenant's."""
        record = json.dumps({"slots": [[s.key, s.limit] for s in slots]})
        args: list[Any] = [run_id, tenant_id, _server_ms(self.client), record, len(slots)]
        for slot in slots:
            args += [slot.key, slot.limit]
        keys = [SLOTS_WAITING, PENDING_RUNS, PENDING_TENANT_PREFIX + tenant_id]
        return bool(self._admit(keys=[*keys, PENDING_TENANTS, SLOTS], args=args))

    def promote(self, limit: int) -> list[str]:
        """Give free slots to waiting runs, tenants in turn; return the runs admitted."""
        keys = [SLOTS_WAITING, PENDING_RUNS, PENDING_TENANTS, SLOTS]
        now = _server_ms(self.client)
        args: list[Any] = [PENDING_TENANT_PREFIX, now, limit, SCAN_DEPTH, RUN_PREFIX]
        return [str(r) for r in self._promote(keys=keys, args=args)]

    def release_slots(self, run_id: str, slots: Sequence[Slot]) -> None:
        """Give back the slots of an ended run."""
        if slots:
            pipe = self.client.pipeline(transaction=False)
            for slot in slots:
                pipe.zrem(slot.key, run_id)
            pipe.execute()

    def audit_slots(self, stale_s: float) -> tuple[int, list[str]]:
        """Free slots of ended or vanished runs; return (freed, admitted runs never started)."""
        now = _server_ms(self.client)
        released, stuck = self._audit(keys=[SLOTS], args=[RUN_PREFIX, now, int(stale_s * 1000)])
        return int(released), [str(r) for r in stuck]

    def activate(
        self,
        run_id: str,
        index: str,
        started_at: float,
        roots: Sequence[str],
        grace_s: float,
        event: Mapping[str, Any] | None = None,
    ) -> bool:
        """Start an admitted run: index it, put its first steps in the outbox (False if it
        was not waiting: started already or cancelled)."""
        keys = [run_key(run_id, "meta"), RUNS, RUN_INDEX, OUTBOX, EVENTS_STREAM, RUNS_STARTED]
        args: list[Any] = [run_id, index, json.dumps(started_at), int(grace_s * 1000)]
        args += [self._event_line(event), self.events_maxlen or 0, *roots]
        return bool(self._activate(keys=keys, args=args))

    def waiting_runs(self) -> dict[str, int]:
        """Waiting runs per tenant."""
        tenants = [str(t) for t in self.client.lrange(PENDING_TENANTS, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.llen(PENDING_TENANT_PREFIX + tenant)
        return dict(zip(tenants, (int(n) for n in pipe.execute()), strict=True))


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


__all__ = ["RedisAdmission"]
