"""The Lua scripts of :class:`~dagflow.stores.redis.RedisRunStore`, one per atomic operation.

Each script is one step of the run store contract (:mod:`dagflow.stores.base`), atomic on
the Redis server. They share :data:`_LIB` (clock, lease parsing). Expiries are compared with
Redis's own ``TIME``, so hosts whose clocks disagree still agree on when a lease ends.
"""

from __future__ import annotations

# A lease is one hash field: "token \t fence \t worker \t expires_ms \t failed_attempts".
# ``expires_ms`` 0 means released (the fence and failure count are kept for the next holder).
_LIB = """
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
    _LIB
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
    _LIB
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
    _LIB
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

# KEYS: states, out, meta, claims, LEASES, OUTBOX, RUNS, EVENTS_STREAM, info, broker queue,
#       maps, arr:<join child>...
# ARGV: task, state, output, total, ttl, fence, token, run_id, grace_ms, n_links, n_joins,
#       event line ('' for none), stream maxlen, end ('' for none), n_messages (0 or
#       n_links), links..., join children..., join needs..., link messages..., skips...,
#       map lengths (JSON {child: "N" or "!error"}, '' for none),
#       gates (JSON of records.Gates, '' for none: the links and joins path)
# With gates, the call that records the end decides the children by their trigger rules
# (unchosen children of a branch first, then each skipped task's children in turn).
# A mapped child whose rule is met is expanded into its instances (TASK[i], pending, the
# first max_parallel of them ready) from the length its map parent's end recorded in the
# maps hash; the end of its last instance ends it (results in item order) and decides its
# children. Only the call that records an end does any of this: a duplicate does nothing.
# The event line (task_ok/task_fail) is appended to the stream, and the attempt's end to the
# info hash, only by the call that records the end, in the same atomic step. In a cancelled
# run the task ends 'cancelled' (no output, no event, no skips, no ready children). With
# messages, each link made ready has its step message pushed onto the broker queue here too.
FINISH = (
    _LIB
    + """
local task = ARGV[1]
local now = now_ms()
local token, fence, worker, expires, fails = parse(redis.call('HGET', KEYS[4], task))
local want = tonumber(ARGV[6])
local s = redis.call('HGET', KEYS[1], task)
if not s then return {'lost', ''} end
if want > 0 then
  if token == '' or fence ~= want then return {'lost', s} end
elseif token ~= '' and token ~= ARGV[7] and expires > now then
  return {'lost', s}
end
local member = ARGV[8] .. '\\t' .. task
local first = 0
local cancelled = redis.call('HEXISTS', KEYS[3], 'cancelled') == 1
local final = ARGV[2]
if cancelled then final = 'cancelled' end
if not terminal(s) then
  redis.call('HSET', KEYS[1], task, final)
  if ARGV[3] ~= '' and not cancelled then redis.call('HSET', KEYS[2], task, ARGV[3]) end
  if ARGV[14] ~= '' then redis.call('HSET', KEYS[9], task, ARGV[14]) end
  redis.call('HINCRBY', KEYS[3], 'n_' .. final, 1)
  first = 1
end
redis.call('HSET', KEYS[4], task, lease(token, fence, worker, 0, fails))
redis.call('ZREM', KEYS[5], member)
redis.call('ZREM', KEYS[6], member)
local n_links, n_joins = tonumber(ARGV[10]), tonumber(ARGV[11])
local newly = {}
local n_msgs = tonumber(ARGV[15])
local skip_from = 16 + n_links + 2 * n_joins + n_msgs
if cancelled then skip_from = #ARGV end
for i = skip_from, #ARGV - 2 do
  if not terminal(redis.call('HGET', KEYS[1], ARGV[i])) then
    redis.call('HSET', KEYS[1], ARGV[i], 'skipped')
    redis.call('HINCRBY', KEYS[3], 'n_skipped', 1)
    redis.call('ZREM', KEYS[6], ARGV[8] .. '\\t' .. ARGV[i])
    table.insert(newly, ARGV[i])
  end
end
local maps = KEYS[11]
local lengths = ARGV[#ARGV - 1]
if lengths ~= '' and first == 1 and final == 'ok' then
  for child, v in pairs(cjson.decode(lengths)) do redis.call('HSET', maps, child .. '\\tn', v) end
  redis.call('EXPIRE', maps, ARGV[5])
end
local gates = ARGV[#ARGV]
local reasons, gated = {}, {}
local mapped = {e = {}, d = {}, x = {}}
if gates ~= '' and first == 1 and not cancelled then
  local g = cjson.decode(gates)
  local queue, decided = {}, {}
  local function open(node)
    return redis.call('HGET', KEYS[1], node) == 'pending'
      and not redis.call('ZSCORE', KEYS[6], ARGV[8] .. '\\t' .. node)
  end
  local function skip(node, why)
    redis.call('HSET', KEYS[1], node, 'skipped')
    redis.call('HINCRBY', KEYS[3], 'n_skipped', 1)
    table.insert(newly, node)
    table.insert(reasons, why)
    decided[node] = true
    for _, c in ipairs(g.n[node].c) do table.insert(queue, c) end
  end
  -- A mapped task ends with no attempt of its own (all its instances ended, none, or its
  -- parent's list was unusable): its children are decided next.
  local function close(node, state, output, err)
    redis.call('HSET', KEYS[1], node, state)
    redis.call('HINCRBY', KEYS[3], 'n_' .. state, 1)
    if output then redis.call('HSET', KEYS[2], node, output) end
    if err then
      redis.call('HSET', KEYS[9], node, cjson.encode({error = err}))
      mapped.x[node] = err
    end
    mapped.d[node] = state
    decided[node] = true
    for _, c in ipairs(g.n[node].c) do table.insert(queue, c) end
  end
  local function expand(node, gate)
    local raw = redis.call('HGET', maps, node .. '\\tn')
    if not raw then
      skip(node, "skipped: map parent '" .. gate.m[1] .. "' did not succeed")
      return
    end
    if string.sub(raw, 1, 1) == '!' then
      close(node, 'failed', nil, string.sub(raw, 2))
      return
    end
    local n = tonumber(raw)
    mapped.e[node] = n
    if n == 0 then
      close(node, 'ok', '{"results":[]}', nil)
      return
    end
    decided[node] = true
    redis.call('HSET', KEYS[1], node, 'mapped')
    redis.call('HINCRBY', KEYS[3], 'total', n)
    redis.call('HSET', maps, node .. '\\tleft', n)
    local start = n
    local most = tonumber(gate.m[2]) or 0
    if most > 0 and most < n then
      start = most
      redis.call('HSET', maps, node .. '\\tnext', most)
    end
    local batch = {}
    for i = 0, n - 1 do
      table.insert(batch, node .. '[' .. i .. ']')
      table.insert(batch, 'pending')
      if #batch >= 1000 or i == n - 1 then
        redis.call('HSET', KEYS[1], unpack(batch))
        batch = {}
      end
    end
    for i = 0, start - 1 do table.insert(gated, node .. '[' .. i .. ']') end
  end
  local base = string.match(task, '^(.+)%[%d+%]$')
  local seeds = g.c
  if base then
    -- An instance ended: start the next one under max_parallel; the last one ends its task.
    seeds = {}
    local n = tonumber(redis.call('HGET', maps, base .. '\\tn') or '0')
    local left = redis.call('HINCRBY', maps, base .. '\\tleft', -1)
    if final == 'failed' then redis.call('HINCRBY', maps, base .. '\\tfail', 1) end
    local nxt = tonumber(redis.call('HGET', maps, base .. '\\tnext') or '-1')
    while nxt >= 0 and nxt < n
        and redis.call('HGET', KEYS[1], base .. '[' .. nxt .. ']') ~= 'pending' do
      nxt = nxt + 1  -- a retry's reused instances are 'ok' already
    end
    if nxt >= 0 and nxt < n then
      redis.call('HSET', maps, base .. '\\tnext', nxt + 1)
      table.insert(gated, base .. '[' .. nxt .. ']')
    end
    if left <= 0 then
      local parts, names = {}, {}
      for i = 0, n - 1 do
        table.insert(names, base .. '[' .. i .. ']')
        if #names >= 1000 or i == n - 1 then
          for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(names))) do
            table.insert(parts, v or 'null')
          end
          names = {}
        end
      end
      local fails = tonumber(redis.call('HGET', maps, base .. '\\tfail') or '0')
      local out = '{"results":[' .. table.concat(parts, ',') .. ']}'
      if fails == 0 then
        close(base, 'ok', out, nil)
      else
        close(base, 'failed', out,
          "RunnerError: Task '" .. base .. "': " .. fails .. ' of ' .. n .. ' instances failed')
      end
    end
  end
  for _, c in ipairs(g.u) do
    if open(c) then skip(c, "skipped: not chosen by branch '" .. task .. "'") end
  end
  for _, c in ipairs(seeds) do table.insert(queue, c) end
  local head = 1
  while head <= #queue do
    local node = queue[head]
    head = head + 1
    if not decided[node] and open(node) then
      local gate = g.n[node]
      local states = redis.call('HMGET', KEYS[1], unpack(gate.p))
      for i = 1, #gate.p do states[i] = states[i] or 'pending' end
      local verdict = decide(gate.r, states)
      if verdict == 'ready' and gate.m then
        expand(node, gate)
      elseif verdict == 'ready' then
        decided[node] = true
        table.insert(gated, node)
      elseif verdict == 'skip' then
        skip(node, skip_reason(gate.r, gate.p, states))
      end
    end
  end
end
local ok = tonumber(redis.call('HGET', KEYS[3], 'n_ok') or '0')
local failed = tonumber(redis.call('HGET', KEYS[3], 'n_failed') or '0')
local skipped = tonumber(redis.call('HGET', KEYS[3], 'n_skipped') or '0')
local n_cancelled = tonumber(redis.call('HGET', KEYS[3], 'n_cancelled') or '0')
local complete = 0
local total = tonumber(redis.call('HGET', KEYS[3], 'total') or ARGV[4])
if ok + failed + skipped + n_cancelled >= total then
  complete = redis.call('HSETNX', KEYS[3], 'complete', '1')
end
local ready = gated
if ARGV[2] == 'ok' and not cancelled then
  for i = 1, n_links do
    local child = ARGV[15 + i]
    if first == 1 and redis.call('HGET', KEYS[1], child) == 'pending' then
      table.insert(ready, child)
      if n_msgs > 0 then
        redis.call('LPUSH', KEYS[10], ARGV[15 + n_links + 2 * n_joins + i])
      end
    end
  end
  for j = 1, n_joins do
    local key = KEYS[11 + j]
    local added = redis.call('SADD', key, task)
    redis.call('EXPIRE', key, ARGV[5])
    local need = tonumber(ARGV[15 + n_links + n_joins + j])
    if added == 1 and redis.call('SCARD', key) >= need then
      table.insert(ready, ARGV[15 + n_links + j])
    end
  end
end
local due = now + tonumber(ARGV[9])
for _, child in ipairs(ready) do
  redis.call('ZADD', KEYS[6], due, ARGV[8] .. '\\t' .. child)
end
redis.call('ZADD', KEYS[7], 'XX', now, ARGV[8])
local written = 0
if first == 1 and ARGV[12] ~= '' and not cancelled then
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[13], '*', 'log', 'events', 'data', ARGV[12])
  written = 1
end
local tag = 'done'
if cancelled then tag = 'cancelled' end
local extra = ''
if next(mapped.e) or next(mapped.d) then extra = cjson.encode(mapped) end
local result = {tag, complete, ok, failed, skipped, first, written, #newly, n_cancelled, extra}
for _, id in ipairs(newly) do table.insert(result, id) end
if gates ~= '' then
  for _, why in ipairs(reasons) do table.insert(result, why) end
end
for _, id in ipairs(ready) do table.insert(result, id) end
return result
"""
)

# KEYS: claims, LEASES   ARGV: task, token, run_id
RELEASE = (
    _LIB
    + """
local token, fence, worker, expires, fails = parse(redis.call('HGET', KEYS[1], ARGV[1]))
if token == '' or token ~= ARGV[2] or expires <= 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], lease(token, fence, worker, 1, fails))
redis.call('ZADD', KEYS[2], 1, ARGV[3] .. '\\t' .. ARGV[1])
return 1
"""
)

# KEYS: LEASES, OUTBOX, OUTBOX_RESENDS, RUNS   ARGV: limit, grace_ms, idle_ms, run key prefix
# Steps of a cancelled run are never re-sent: the run is reported in its own list instead.
SWEEP = (
    _LIB
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

# KEYS: states, meta, claims, LEASES, OUTBOX, OUTBOX_RESENDS   ARGV: run_id, force ('1'/'0')
# Returns {'gone'}, {'finished', status JSON} or
# {'cancelled', complete, n_newly, newly..., (task, token) of live leases...}.
CANCEL = (
    _LIB
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
