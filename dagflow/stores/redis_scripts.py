"""The Lua scripts of :class:`~dagflow.stores.redis.RedisRunStore`, one per atomic operation.

Each script is one step of the run store contract (:mod:`dagflow.stores.base`), atomic on
the Redis server. They share :data:`LIB` (clock, lease parsing). Expiries are compared with
Redis's own ``TIME``, so hosts whose clocks disagree still agree on when a lease ends.
"""

from __future__ import annotations

# A lease is one hash field: "token \t fence \t worker \t expires_ms \t failed_attempts".
# ``expires_ms`` 0 means released (the fence and failure count are kept for the next holder).
LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function parse(raw)
  if not raw then return '', 0, '', 0, 0 end
  local f = {}
  for part in string.gmatch(raw .. '\\t', '([^\\t]*)\\t') do f[#f + 1] = part end
  return f[1] or '', tonumber(f[2]) or 0, f[3] or '', tonumber(f[4]) or 0, tonumber(f[5]) or 0
end
local function lease(token, fence, worker, expires, fails)
  return token .. '\\t' .. string.format('%.0f', fence) .. '\\t' .. worker .. '\\t'
    .. string.format('%.0f', expires) .. '\\t' .. string.format('%.0f', fails)
end
local function terminal(s)
  return s == 'ok' or s == 'failed' or s == 'skipped' or s == 'cancelled'
end
local function counted(meta)
  local n = 0
  for _, k in ipairs({'n_ok', 'n_failed', 'n_skipped', 'n_cancelled'}) do
    n = n + tonumber(redis.call('HGET', meta, k) or '0')
  end
  return n
end
-- End an open task as cancelled (its run was cancelled): state, count, lease, indexes.
local function cancel_task(states, meta, claims, leases, outbox, resends, run, task)
  local member = run .. '\\t' .. task
  redis.call('HSET', states, task, 'cancelled')
  redis.call('HINCRBY', meta, 'n_cancelled', 1)
  local token, fence, worker, expires, fails = parse(redis.call('HGET', claims, task))
  if token ~= '' then redis.call('HSET', claims, task, lease(token, fence, worker, 0, fails)) end
  redis.call('ZREM', leases, member)
  redis.call('ZREM', outbox, member)
  redis.call('HDEL', resends, member)
end
-- The trigger rule table of dagflow.dag.rules.decide, line by line.
local function decide(rule, states)
  local n, ok, failed, done = #states, 0, 0, 0
  for _, s in ipairs(states) do
    if s == 'ok' then ok = ok + 1 end
    if s == 'failed' then failed = failed + 1 end
    if terminal(s) then done = done + 1 end
  end
  local everyone = done == n
  if n == 0 then return 'ready' end
  if rule == 'all_done' then
    if everyone then return 'ready' end
    return 'wait'
  elseif rule == 'one_success' or rule == 'one_failed' then
    local hit = ok
    if rule == 'one_failed' then hit = failed end
    if hit > 0 then return 'ready' elseif everyone then return 'skip' end
    return 'wait'
  elseif rule == 'none_failed' then
    if failed > 0 then return 'skip' elseif everyone then return 'ready' end
    return 'wait'
  end
  if ok == n then return 'ready' elseif done > ok then return 'skip' end
  return 'wait'
end
-- dagflow.dag.rules.decisive: can a parent's end as s decide a task with rule early?
local function decisive(rule, s)
  if rule == 'all_done' then return false end
  if rule == 'one_success' then return s == 'ok' end
  if rule == 'one_failed' or rule == 'none_failed' then return s == 'failed' end
  return s ~= 'ok'
end
-- dagflow.dag.rules.skip_reason.
local function skip_reason(rule, parents, states)
  if rule == 'all_success' then
    for i, s in ipairs(states) do
      if s == 'failed' then return "skipped: upstream task '" .. parents[i] .. "' failed" end
    end
    for i, s in ipairs(states) do
      if terminal(s) and s ~= 'ok' then
        return "skipped: upstream task '" .. parents[i] .. "' was skipped"
      end
    end
  end
  return 'skipped: trigger rule ' .. rule .. ' can no longer be met'
end
local function complete_if_done(meta)
  if counted(meta) >= tonumber(redis.call('HGET', meta, 'total') or '0') then
    return redis.call('HSETNX', meta, 'complete', '1')
  end
  return 0
end
"""

# KEYS: states, claims, out, LEASES, OUTBOX, RUNS, OUTBOX_RESENDS, meta, EVENTS_STREAM
# ARGV: task, token, worker, lease_ms, run_id, stream maxlen, event head, event middle,
#       event tail, parents...
# In a cancelled run the task ends cancelled instead: {'cancelled', 1, complete}.
# When the lease is granted and an event head is given, the task_start line
# head .. attempt .. middle .. fence .. tail is appended to the stream in the same step.
CLAIM = (
    LIB
    + """
local s = redis.call('HGET', KEYS[1], ARGV[1])
if not s then return {'gone'} end
if terminal(s) or s == 'mapped' then return {s} end
local now = now_ms()
local token, fence, worker, expires, fails = parse(redis.call('HGET', KEYS[2], ARGV[1]))
if token ~= '' and expires > now then return {'busy', worker} end
if redis.call('HEXISTS', KEYS[8], 'cancelled') == 1 then
  cancel_task(KEYS[1], KEYS[8], KEYS[2], KEYS[4], KEYS[5], KEYS[7], ARGV[5], ARGV[1])
  return {'cancelled', 1, complete_if_done(KEYS[8])}
end
local prev = ''
if token ~= '' and expires > 0 then prev = worker end
fence = fence + 1
local until_ms = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], lease(ARGV[2], fence, ARGV[3], until_ms, fails))
redis.call('HSET', KEYS[1], ARGV[1], 'running')
local member = ARGV[5] .. '\\t' .. ARGV[1]
redis.call('ZADD', KEYS[4], until_ms, member)
redis.call('ZREM', KEYS[5], member)
redis.call('HDEL', KEYS[7], member)
redis.call('ZADD', KEYS[6], 'XX', now, ARGV[5])
if ARGV[7] ~= '' then
  local line = ARGV[7] .. string.format('%.0f', fails + 1) .. ARGV[8]
    .. string.format('%.0f', fence) .. ARGV[9]
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[6], '*', 'log', 'events', 'data', line)
end
local result = {'run', fence, fails + 1, prev}
for i = 10, #ARGV do
  table.insert(result, redis.call('HGET', KEYS[3], ARGV[i]) or '')
end
return result
"""
)

# KEYS: LEASES, RUNS, claims of each lease...   ARGV: lease_ms, then (task, fence, run_id)...
RENEW = (
    LIB
    + """
local now = now_ms()
local out = {}
for i = 3, #KEYS do
  local a = 2 + (i - 3) * 3
  local token, fence, worker, expires, fails = parse(redis.call('HGET', KEYS[i], ARGV[a]))
  local ok = 0
  if token ~= '' and expires > 0 and fence == tonumber(ARGV[a + 1]) then
    local until_ms = now + tonumber(ARGV[1])
    redis.call('HSET', KEYS[i], ARGV[a], lease(token, fence, worker, until_ms, fails))
    redis.call('ZADD', KEYS[1], until_ms, ARGV[a + 2] .. '\\t' .. ARGV[a])
    redis.call('ZADD', KEYS[2], 'XX', now, ARGV[a + 2])
    ok = 1
  end
  out[#out + 1] = ok
end
return out
"""
)

# KEYS: states, claims, LEASES, OUTBOX, RUNS, EVENTS_STREAM, info
# ARGV: task, fence, due_ms, run_id, event line ('' for none), stream maxlen, end ('' for none)
RETRY = (
    LIB
    + """
local token, fence, worker, expires, fails = parse(redis.call('HGET', KEYS[2], ARGV[1]))
if token == '' or fence ~= tonumber(ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) == 'running' then
  local now = now_ms()
  local member = ARGV[4] .. '\\t' .. ARGV[1]
  redis.call('HSET', KEYS[2], ARGV[1], lease(token, fence, worker, 0, fails + 1))
  redis.call('HSET', KEYS[1], ARGV[1], 'retry')
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[7], ARGV[1], ARGV[7]) end
  redis.call('ZREM', KEYS[3], member)
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), member)
  redis.call('ZADD', KEYS[5], 'XX', now, ARGV[4])
  if ARGV[5] ~= '' then
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'log', 'events', 'data', ARGV[5])
    return 2
  end
end
return 1
"""
)

# KEYS: claims, LEASES   ARGV: task, token, run_id
RELEASE = (
    LIB
    + """
local token, fence, worker, expires, fails = parse(redis.call('HGET', KEYS[1], ARGV[1]))
if token == '' or token ~= ARGV[2] or expires <= 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], lease(token, fence, worker, 1, fails))
redis.call('ZADD', KEYS[2], 1, ARGV[3] .. '\\t' .. ARGV[1])
return 1
"""
)

# KEYS: states, meta, claims, LEASES, OUTBOX, OUTBOX_RESENDS   ARGV: run_id, force ('1'/'0')
# Returns {'gone'}, {'finished', status JSON} or
# {'cancelled', complete, n_newly, newly..., (task, token) of live leases...}.
CANCEL = (
    LIB
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then return {'gone'} end
local status = redis.call('HGET', KEYS[2], 'status')
if status then return {'finished', status} end
if redis.call('HEXISTS', KEYS[2], 'complete') == 1 then return {'finished', ''} end
redis.call('HSET', KEYS[2], 'cancelled', 'true')
local now = now_ms()
local states = redis.call('HGETALL', KEYS[1])
local newly, running = {}, {}
for i = 1, #states, 2 do
  local task, s = states[i], states[i + 1]
  if not terminal(s) then
    local token, fence, worker, expires = parse(redis.call('HGET', KEYS[3], task))
    if s == 'running' and token ~= '' and expires > now and ARGV[2] ~= '1' then
      table.insert(running, task)
      table.insert(running, token)
    else
      cancel_task(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[1], task)
      table.insert(newly, task)
    end
  end
end
local result = {'cancelled', complete_if_done(KEYS[2]), #newly}
for _, t in ipairs(newly) do table.insert(result, t) end
for _, t in ipairs(running) do table.insert(result, t) end
return result
"""
)
