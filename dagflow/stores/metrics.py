"""What ``dagflow metrics`` reads and writes in Redis: the counted events and the gauges.

**Counters and histograms** are counted from the event stream by the consumer group
``metrics`` (next to the collectors' group, which it does not disturb). An exporter reads a
batch with ``XREADGROUP``, turns each entry into updates (:mod:`dagflow.metrics.mapping`,
pure) and applies them with :data:`APPLY`, one Lua script that, entry by entry,
acknowledges it and applies its updates **only if the acknowledgement removed it from the
group's pending list**. So:

* a worker killed at any moment loses no count: its events are in the stream (appended
  in the same script as the store commit), whatever happens to the process;
* an exporter killed at any moment counts nothing twice and loses nothing: what it read
  but did not apply stays pending, and a restarted (or another) exporter takes it over
  with ``XAUTOCLAIM`` after :data:`CLAIM_IDLE_MS`;
* two exporters at once share the group: each entry is counted once in total, even if
  both end up applying it (the second acknowledgement removes nothing, so it adds
  nothing), and both serve the same totals, read from :data:`~dagflow.keys.METRICS`.

Entries trimmed from the stream (``DAGFLOW_EVENTS_MAXLEN``) before any exporter read them
are never counted: run an exporter whenever workers run.

**Gauges** are read from Redis when Prometheus scrapes (:meth:`RedisMetricsStore.gauges`),
with short timeouts; each read is bounded (:data:`SCAN_LIMIT`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from dagflow.events.collector import collector_lag
from dagflow.keys import (
    EVENTS_STREAM,
    JOBS,
    METRICS,
    METRICS_GROUP,
    PENDING_RUNS,
    PENDING_TENANT_PREFIX,
    PENDING_TENANTS,
    POOLS,
    RUN_INDEX,
    SLOTS,
    job_key,
    pool_key,
    run_key,
)
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.stores.transport import sealed

#: Entries read per call, and how long one read blocks waiting for new ones (ms).
BATCH = 1_000
BLOCK_MS = 1_000
#: Pending entries idle this long (ms) belong to an exporter that stopped: take them over.
#: Applying is idempotent, so a short time only costs duplicate work, never a double count.
CLAIM_IDLE_MS = 5_000
#: Seconds between two looks for entries left pending (at start and after an error too).
RECOVER_S = 15.0
#: Consumers of the group with nothing pending and idle this long are deleted (ms).
FORGET_CONSUMER_MS = 3_600_000
#: Most members one gauge read looks at (runs active, waiting runs, jobs).
SCAN_LIMIT = 100_000
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 5.0

# KEYS: stream, metrics hash. ARGV: group, then per entry: id, n, n x (op, field, amount).
APPLY = """
local i, applied = 2, 0
while i <= #ARGV do
  local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  if acked == 1 then applied = applied + 1 end
  for _ = 1, n do
    if acked == 1 then
      local op, f, amount = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      if op == 'c' then
        redis.call('HINCRBY', KEYS[2], f, amount)
      elseif op == 'f' then
        redis.call('HINCRBYFLOAT', KEYS[2], f, amount)
      else
        local now = tonumber(redis.call('HGET', KEYS[2], f))
        if not now or tonumber(amount) > now then redis.call('HSET', KEYS[2], f, amount) end
      end
    end
    i = i + 3
  end
end
return applied
"""


@dataclass(frozen=True)
class Entry:
    """One stream entry read for counting.

    Attributes:
        id: The stream entry's id.
        log: ``events`` or ``state``.
        record: The JSON line, or None when it was trimmed from the stream or unreadable.
    """

    id: str
    log: str
    record: dict[str, Any] | None


@dataclass(frozen=True)
class Gauges:
    """What the gauges show, read from Redis at one scrape.

    Attributes:
        runs_active: Runs started and not ended, per tenant.
        runs_pending: Waiting runs per (tenant, reason); the reason is the scope of the
            first slot the run waits for that is full, or ``queued``.
        slots_in_use: Runs holding a slot, per slot scope (``dag:x``, ``tenant:y``,
            ``scheduled``).
        slots_limit: Each scope's limit, where a holder or a waiter records it.
        jobs: Jobs per status.
        stream_length: Entries in the event stream.
        collector_lag_s: Age of the oldest entry the collectors have not written.
    """

    runs_active: dict[str, int] = field(default_factory=dict)
    runs_pending: dict[tuple[str, str], int] = field(default_factory=dict)
    slots_in_use: dict[str, int] = field(default_factory=dict)
    slots_limit: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    stream_length: int = 0
    collector_lag_s: float = 0.0


def _scope(key: str) -> str:
    return key[len(SLOTS) + 1 :] if key.startswith(SLOTS + ":") else key


class RedisMetricsStore:
    """The exporter's Redis: the ``metrics`` group and hash, and the gauges' sources.

    Args:
        url: The Redis that holds run state and the event stream.
        master_name: The Sentinel primary's name, for a ``sentinel://`` URL.
        name: This consumer's name in the group (host and pid by default).
        claim_idle_ms: Take over other consumers' entries pending this long.

    Raises:
        UnreachableError: From every method, when Redis cannot be reached.
    """

    def __init__(
        self,
        url: str,
        *,
        master_name: str = DEFAULT_MASTER_NAME,
        name: str | None = None,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.url = url
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self.client: redis.Redis = redis_client(
            url,
            master_name=master_name,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
        )
        self._apply = self.client.register_script(APPLY)
        self._recover_at = 0.0

    def setup(self) -> None:
        """Create the group (from the stream's start: every event still held is counted)."""
        with sealed(self.url):
            try:
                self.client.xgroup_create(EVENTS_STREAM, METRICS_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def recover_soon(self) -> None:
        """Look for entries left pending at the next :meth:`read` (after an error)."""
        self._recover_at = 0.0

    def read(self, block_ms: int = BLOCK_MS, count: int = BATCH) -> list[Entry]:
        """The next entries to count: first, now and then, the ones left pending (this
        consumer's, and those of an exporter that stopped), else new ones."""
        with sealed(self.url):
            try:
                return self._read(block_ms, count)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
        # The stream or the group is gone (Redis restarted empty, or was flushed): make them
        # again and count the new stream from its start.
        self.setup()
        return []

    def _read(self, block_ms: int, count: int) -> list[Entry]:
        entries: list[tuple[str, dict[str, str]]] = []
        if time.monotonic() >= self._recover_at:
            entries = self._group_read("0", None, count)
            if not entries:
                entries = self._autoclaim(count)
            if not entries:
                self._forget_consumers()
                self._recover_at = time.monotonic() + RECOVER_S
        if not entries:
            entries = self._group_read(">", block_ms, count)
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    def _group_read(
        self, start: str, block_ms: int | None, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.client.xreadgroup(
            METRICS_GROUP, self.name, {EVENTS_STREAM: start}, count=count, block=block_ms
        )
        return [(str(i), f or {}) for i, f in reply[0][1]] if reply else []

    def _autoclaim(self, count: int) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.client.xautoclaim(
            EVENTS_STREAM, METRICS_GROUP, self.name, self.claim_idle_ms, "0-0", count=count
        )
        entries = reply[1] if len(reply) > 1 else []
        # An entry trimmed from the stream comes back as None (Redis 7 lists its id apart).
        return [(str(i), f or {}) for i, f in (e for e in entries if e)]

    def _forget_consumers(self) -> None:
        for consumer in self.client.xinfo_consumers(EVENTS_STREAM, METRICS_GROUP):
            name = str(consumer.get("name"))
            idle = int(consumer.get("idle") or 0) > FORGET_CONSUMER_MS
            if name != self.name and idle and not int(consumer.get("pending") or 0):
                self.client.xgroup_delconsumer(EVENTS_STREAM, METRICS_GROUP, name)

    def apply(self, batch: Sequence[tuple[str, Sequence[tuple[str, str, float]]]]) -> int:
        """Acknowledge each entry and apply its updates, atomically; an entry another
        exporter acknowledged first adds nothing. Returns how many entries this call counted.

        Args:
            batch: ``(entry id, [(op, field, amount), ...])`` per entry (see
                :class:`dagflow.metrics.mapping.Update`).
        """
        if not batch:
            return 0
        args: list[Any] = [METRICS_GROUP]
        for entry_id, ops in batch:
            args += [entry_id, len(ops)]
            for op, name, amount in ops:
                args += [op, name, int(amount) if op == "c" else repr(float(amount))]
        with sealed(self.url):
            return int(self._apply(keys=[EVENTS_STREAM, METRICS], args=args))

    def values(self) -> dict[str, float]:
        """Every counted series: hash field -> value."""
        with sealed(self.url):
            raw: dict[str, str] = self.client.hgetall(METRICS)  # type: ignore[assignment]
        return {k: float(v) for k, v in raw.items()}

    def backlog(self) -> int:
        """Entries of the stream the group has not counted yet (pending or never read)."""
        with sealed(self.url):
            try:
                groups = self.client.xinfo_groups(EVENTS_STREAM)
            except redis.ResponseError:
                return 0
        group = next((g for g in groups if str(g.get("name")) == METRICS_GROUP), None)
        if group is None:
            return 0
        return int(group.get("pending") or 0) + int(group.get("lag") or 0)

    def gauges(self, now_ms: int | None = None) -> Gauges:
        """Read every gauge (see :class:`Gauges`)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with sealed(self.url):
            lag = collector_lag(self.client, now_ms)
            pending, limits = self._pending()
            in_use, held_limits = self._slots()
            return Gauges(
                runs_active=self._runs_active(),
                runs_pending=pending,
                slots_in_use=in_use,
                slots_limit={**held_limits, **limits},
                jobs=self._jobs(),
                stream_length=lag.stream_length,
                collector_lag_s=lag.seconds,
            )

    def _runs_active(self) -> dict[str, int]:
        tenants: Counter[str] = Counter()
        for n, (_, value) in enumerate(self.client.hscan_iter(RUN_INDEX, count=1000)):
            if n >= SCAN_LIMIT:
                break
            tenants[str(value).partition("\t")[2]] += 1
        return dict(tenants)

    def _pending(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """Waiting runs per (tenant, reason), and the limits their records name."""
        tenants = [str(t) for t in self.client.lrange(PENDING_TENANTS, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.lrange(PENDING_TENANT_PREFIX + tenant, 0, SCAN_LIMIT - 1)
        queues = dict(zip(tenants, pipe.execute(), strict=True))
        runs = [run for queue in queues.values() for run in queue]
        records = self.client.hmget(PENDING_RUNS, runs) if runs else []
        slots_of: dict[str, list[tuple[str, int]]] = {}
        for run, raw in zip(runs, records, strict=True):
            slots_of[run] = _slots(raw)
        limits = {_scope(k): lim for slots in slots_of.values() for k, lim in slots}
        keys = sorted({k for slots in slots_of.values() for k, _ in slots})
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zcard(key)
        held = dict(zip(keys, (int(n) for n in pipe.execute()), strict=True))
        out: Counter[tuple[str, str]] = Counter()
        for tenant, queue in queues.items():
            for run in queue:
                full = next((k for k, lim in slots_of.get(run, []) if held[k] >= lim), None)
                out[(tenant, _scope(full) if full else "queued")] += 1
        return dict(out), limits

    def _slots(self) -> tuple[dict[str, int], dict[str, int]]:
        """Runs holding each scope's slots, and each scope's limit as a holder records it."""
        keys = sorted(str(k) for k in self.client.smembers(SLOTS))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zcard(key)
            pipe.zrange(key, 0, 0)
        replies = pipe.execute()
        in_use = {_scope(k): int(replies[2 * i]) for i, k in enumerate(keys)}
        holders = {k: replies[2 * i + 1][0] for i, k in enumerate(keys) if replies[2 * i + 1]}
        pipe = self.client.pipeline(transaction=False)
        for run in holders.values():
            pipe.hget(run_key(str(run), "meta"), "slots")
        limits: dict[str, int] = {}
        for raw in pipe.execute():
            for scope, limit in _slots(raw):
                limits[_scope(scope)] = limit
        # Pools (``pool:`` tasks): each pool's holders, and the size the workers recorded.
        sizes = {str(k): int(v) for k, v in self.client.hgetall(POOLS).items()}
        pipe = self.client.pipeline(transaction=False)
        for pool in sizes:
            pipe.zcard(pool_key(pool, "holders"))
        for pool, held in zip(sizes, pipe.execute(), strict=True):
            in_use[f"pool:{pool}"] = int(held)
            limits[f"pool:{pool}"] = sizes[pool]
        return {s: n for s, n in in_use.items() if n}, limits

    def _jobs(self) -> dict[str, int]:
        ids = self.client.zrevrange(JOBS, 0, SCAN_LIMIT - 1)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(job_key(str(job_id)), "status")
        return dict(Counter(str(s) for s in pipe.execute() if s))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _slots(raw: Any) -> list[tuple[str, int]]:
    """``[[scope or key, limit], ...]`` of a slot record (a run's ``slots`` meta field, or
    its waiting record ``{"slots": [...]}``); empty if unreadable."""
    try:
        data = json.loads(raw) if raw else []
    except ValueError:
        return []
    if isinstance(data, dict):
        data = data.get("slots") or []
    out = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, list) and len(item) == 2:
            scope = str(item[0])
            key = scope if scope.startswith(SLOTS + ":") else f"{SLOTS}:{scope}"
            out.append((key, int(item[1])))
    return out


def _entry(entry_id: str, fields: dict[str, str]) -> Entry:
    if not fields or "data" not in fields:
        return Entry(entry_id, "", None)
    try:
        record = json.loads(fields["data"])
    except ValueError:
        return Entry(entry_id, fields.get("log", "events"), None)
    log = fields.get("log", "events")
    return Entry(entry_id, log, record if isinstance(record, dict) else None)
