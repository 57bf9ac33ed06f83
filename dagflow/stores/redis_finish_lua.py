"""The Lua text of the finish script (:data:`FINISH`), run by
:class:`dagflow.stores.redis_finish.RedisFinish`: a step's end, its skips, joins, trigger
rules and maps, and the event lines of what it decided, in one atomic step.

Kept apart from the Python that calls it so that each stays readable; the in-memory twin
of its rule path is :mod:`dagflow.stores.memory_gates`.
"""

from __future__ import annotations

from dagflow.dag.rules import READ_ALL_MAX
from dagflow.stores.redis_scripts import LIB

# A string as Python's json.dumps(ensure_ascii=False) writes it: '"', '\' and the control
# characters below 0x20 escaped (\n, \t... or \u00XX), everything else as it is. cjson
# would also escape '/', so a line built with it would not be the one Python writes.
JSON_STRING = r"""
local JSON_ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
local function jstr(s)
  local out = string.gsub(s, '[%z\1-\31"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. out .. '"'
end
"""

# KEYS: states, out, meta, claims, LEASES, OUTBOX, RUNS, EVENTS_STREAM, info, broker queue,
#       maps, arr:<join child>...
# ARGV: task, state, output, total, ttl, fence, token, run_id, grace_ms, n_links, n_joins,
#       event line ('' for none), stream maxlen, end ('' for none), n_messages (0 or
#       n_links), links..., join children..., join needs..., link messages...,
#       (skip, its workflow_ref)..., map lengths (JSON {child: "N" or "!error"}, '' for none),
#       gates (JSON of records.Gates, '' for none: the links and joins path)
# With gates, the call that records the end decides the children by their trigger rules
# (unchosen children of a branch first, then each skipped task's children in turn). A task
# with more than READ_ALL_MAX parents comes with their number (k), not their names: it is
# decided only when an end can decide it or all its parents ended (its arr: set), and then
# reads their names from the run's parents hash (written with the run: wide_parents).
# A mapped child whose rule is met is expanded into its instances (TASK[i], pending, the
# first max_parallel of them ready) from the length its map parent's end recorded in the
# maps hash; the end of its last instance ends it (results in item order) and decides its
# children. Only the call that records an end does any of this: a duplicate does nothing.
# The event line (task_ok/task_fail) is appended to the stream, and the attempt's end to the
# info hash, only by the call that records the end, in the same atomic step; after it, the
# lines of what the call decided: a task_skip for each task it skipped, a map_expand for each
# mapped task it expanded and a map_done for each it ended, built here as the Event model
# writes them (its field order, json.dumps' escapes), with the event line's timestamp, run,
# DAG and tenant, and each task's workflow_ref from its gate ('w') or the skip list. In a
# cancelled run the task ends 'cancelled' (no output, no event, no skips, no ready children). With
# messages, each link made ready has its step message pushed onto the broker queue here too.
FINISH = (
    LIB
    + JSON_STRING
    + f"local READ_ALL_MAX = {READ_ALL_MAX}\n"
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
-- Why each of newly was skipped, and its workflow_ref, for its task_skip line.
local why, refs = {}, {}
for i = skip_from, #ARGV - 3, 2 do
  if not terminal(redis.call('HGET', KEYS[1], ARGV[i])) then
    redis.call('HSET', KEYS[1], ARGV[i], 'skipped')
    redis.call('HINCRBY', KEYS[3], 'n_skipped', 1)
    redis.call('ZREM', KEYS[6], ARGV[8] .. '\\t' .. ARGV[i])
    table.insert(newly, ARGV[i])
    why[ARGV[i]] = "skipped: upstream task '" .. task .. "' failed"
    refs[ARGV[i]] = ARGV[i + 1]
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
-- Mapped tasks expanded and ended, in the order it happened (for their lines).
local expanded, closed = {}, {}
if gates ~= '' and first == 1 and not cancelled then
  local g = cjson.decode(gates)
  local queue, decided, hot = {}, {}, {}
  -- The run's other keys, beside its maps key: a wide task's set of ended parents
  -- (arr:<task>), the wide tasks' parents, and the plan.
  local run_prefix = string.sub(maps, 1, #maps - 4)
  local ended_prefix, wide_key = run_prefix .. 'arr:', run_prefix .. 'parents'
  local function open(node)
    return redis.call('HGET', KEYS[1], node) == 'pending'
      and not redis.call('ZSCORE', KEYS[6], ARGV[8] .. '\\t' .. node)
  end
  local function width(gate) return gate.k or #gate.p end
  -- A run stored before wide tasks' parents were: its ended parents were not all counted.
  local function ends_counted(node, gate)
    return gate.p or redis.call('HEXISTS', wide_key, node) == 1
  end
  -- A task's parents and their states (HMGET in batches: unpack takes at most ~8,000).
  local function parents_of(node, gate)
    local names = gate.p
    if not names then
      local raw = redis.call('HGET', wide_key, node)
      if raw then
        names = cjson.decode(raw)
      else
        names = cjson.decode(redis.call('GET', run_prefix .. 'plan')).tasks[node].parents
      end
    end
    local states, batch = {}, {}
    for i, name in ipairs(names) do
      table.insert(batch, name)
      if #batch >= 1000 or i == #names then
        for _, s in ipairs(redis.call('HMGET', KEYS[1], unpack(batch))) do
          table.insert(states, s or 'pending')
        end
        batch = {}
      end
    end
    return names, states
  end
  -- parent ended as state: its children are decided next. A child with more than
  -- READ_ALL_MAX parents counts the end in its set of ended parents, and is hot when this
  -- end can decide it (rules.decisive); it reads all its parents' states only then or once
  -- every parent has ended (rules.READ_ALL_MAX).
  local function ended(parent, state, children)
    for _, c in ipairs(children) do
      local gate = g.n[c]
      if width(gate) > READ_ALL_MAX then
        redis.call('SADD', ended_prefix .. c, parent)
        redis.call('EXPIRE', ended_prefix .. c, ARGV[5])
        if decisive(gate.r, state) then hot[c] = true end
      end
      table.insert(queue, c)
    end
  end
  local function skip(node, reason)
    redis.call('HSET', KEYS[1], node, 'skipped')
    redis.call('HINCRBY', KEYS[3], 'n_skipped', 1)
    table.insert(newly, node)
    table.insert(reasons, reason)
    why[node], refs[node] = reason, g.n[node].w
    decided[node] = true
    ended(node, 'skipped', g.n[node].c)
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
    table.insert(closed, node)
    refs[node] = g.n[node].w
    decided[node] = true
    ended(node, state, g.n[node].c)
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
    table.insert(expanded, node)
    refs[node] = g.n[node].w
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
  if base then
    -- An instance ended: start the next one under max_parallel; the last one ends its task.
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
  if not base then ended(task, final, g.c) end
  local head = 1
  while head <= #queue do
    local node = queue[head]
    head = head + 1
    local gate = g.n[node]
    if not decided[node] and open(node) and (width(gate) <= READ_ALL_MAX or hot[node]
        or redis.call('SCARD', ended_prefix .. node) >= width(gate)
        or not ends_counted(node, gate)) then
      local names, states = parents_of(node, gate)
      local verdict = decide(gate.r, states)
      if verdict == 'ready' and gate.m then
        expand(node, gate)
      elseif verdict == 'ready' then
        decided[node] = true
        table.insert(gated, node)
      elseif verdict == 'skip' then
        skip(node, skip_reason(gate.r, names, states))
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
  if #newly > 0 or #expanded > 0 or #closed > 0 then
    local ev = cjson.decode(ARGV[12])
    -- The common fields, in the Event model's order: timestamp, event, run, DAG, tenant.
    local head = '{'
    if type(ev.timestamp) == 'string' then head = '{"timestamp":' .. jstr(ev.timestamp) .. ',' end
    local common = ''
    for _, k in ipairs({'run_id', 'dag_name', 'tenant_id'}) do
      if type(ev[k]) == 'string' then common = common .. ',"' .. k .. '":' .. jstr(ev[k]) end
    end
    local function emit(name, node, rest)
      local ref = ''
      if type(refs[node]) == 'string' and refs[node] ~= '' then
        ref = ',"workflow_ref":' .. jstr(refs[node])
      end
      local line = head .. '"event":"' .. name .. '"' .. common .. ',"task_id":' .. jstr(node)
        .. ref .. rest .. '}'
      redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[13], '*', 'log', 'events', 'data', line)
    end
    for _, node in ipairs(newly) do emit('task_skip', node, ',"error":' .. jstr(why[node])) end
    for _, node in ipairs(expanded) do
      emit('map_expand', node, ',"instances":' .. string.format('%d', mapped.e[node]))
    end
    for _, node in ipairs(closed) do
      local rest = ''
      if mapped.x[node] then rest = ',"error":' .. jstr(mapped.x[node]) end
      if mapped.d[node] == 'ok' then
        rest = rest .. ',"status":"success"'
      else
        rest = rest .. ',"status":"failed"'
      end
      emit('map_done', node, rest)
    end
  end
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
