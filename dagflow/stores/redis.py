"""Run store on Redis: Lua scripts make each step of a join atomic across workers.

Keys are listed in :mod:`dagflow.keys`. Every key expires ``ttl`` seconds after the run
starts (``DAGFLOW_RUN_TTL_S``, 7 days), far longer than a run, unlike Celery's own chord
counters which expire with ``result_expires``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import redis
from redis.typing import EncodableT, FieldT

from dagflow.keys import run_key
from dagflow.stores.base import TERMINAL, Claim, ClaimResult, FinishResult, RunSnapshot

_CLAIM = """
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s == 'ok' or s == 'failed' or s == 'skipped' then return {s} end
local holder = redis.call('HGET', KEYS[2], ARGV[1])
if holder and holder ~= ARGV[2] then return {'duplicate'} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], 'running')
local result = {'run'}
for i = 3, #ARGV do
  table.insert(result, redis.call('HGET', KEYS[3], ARGV[i]) or '')
end
return result
"""

_FINISH = """
local function terminal(s) return s == 'ok' or s == 'failed' or s == 'skipped' end
local newly = {}
if not terminal(redis.call('HGET', KEYS[1], ARGV[1])) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
  redis.call('HINCRBY', KEYS[3], 'n_' .. ARGV[2], 1)
end
local first_skip = 8 + (#KEYS - 3)
for i = first_skip, #ARGV do
  if not terminal(redis.call('HGET', KEYS[1], ARGV[i])) then
    redis.call('HSET', KEYS[1], ARGV[i], 'skipped')
    redis.call('HINCRBY', KEYS[3], 'n_skipped', 1)
    table.insert(newly, ARGV[i])
  end
end
local ok = tonumber(redis.call('HGET', KEYS[3], 'n_ok') or '0')
local failed = tonumber(redis.call('HGET', KEYS[3], 'n_failed') or '0')
local skipped = tonumber(redis.call('HGET', KEYS[3], 'n_skipped') or '0')
local complete = 0
if ok + failed + skipped >= tonumber(ARGV[4]) then
  complete = redis.call('HSETNX', KEYS[3], 'complete', '1')
end
local result = {complete, ok, failed, skipped, #newly}
for _, id in ipairs(newly) do table.insert(result, id) end
if ARGV[2] == 'ok' then
  for i = 4, #KEYS do
    local added = redis.call('SADD', KEYS[i], ARGV[1])
    redis.call('EXPIRE', KEYS[i], ARGV[6])
    local need = tonumber(ARGV[7 + (i - 3)])
    if redis.call('SCARD', KEYS[i]) >= need and (added == 1 or ARGV[7] == '1') then
      table.insert(result, i - 3)
    end
  end
end
return result
"""


_key = run_key


class RedisRunStore:
    """A :class:`~dagflow.stores.base.RunStore` on a Redis server.

    Args:
        url: ``redis://host:port/db`` of the server (the broker's or result backend's).
        ttl: Seconds every key of a run lives after the run starts.
    """

    def __init__(self, url: str, ttl: int = 7 * 24 * 3600) -> None:
        self.url = url
        self.ttl = ttl
        self.client: redis.Redis = redis.Redis.from_url(url, decode_responses=True)
        self._claim = self.client.register_script(_CLAIM)
        self._finish = self.client.register_script(_FINISH)

    def create_run(
        self, run_id: str, plan: str, meta: Mapping[str, Any], task_ids: Sequence[str]
    ) -> None:
        """Store the plan, metadata and pending states in one transaction."""
        fields: dict[FieldT, EncodableT] = {k: json.dumps(v) for k, v in meta.items()}
        fields.update(n_ok="0", n_failed="0", n_skipped="0", total=str(len(task_ids)))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(_key(run_id, "plan"), plan, ex=self.ttl)
        pipe.hset(_key(run_id, "meta"), mapping=fields)
        pipe.hset(_key(run_id, "states"), mapping=dict.fromkeys(task_ids, "pending"))
        # Placeholder fields so these hashes exist now and carry the run's expiry.
        pipe.hset(_key(run_id, "claims"), "_", "")
        pipe.hset(_key(run_id, "out"), "_", "")
        for part in ("meta", "states", "claims", "out"):
            pipe.expire(_key(run_id, part), self.ttl)
        pipe.execute()

    def load_plan(self, run_id: str) -> str | None:
        """Return the plan JSON, or None."""
        return cast("str | None", self.client.get(_key(run_id, "plan")))

    def claim(self, run_id: str, task_id: str, token: str, parents: Sequence[str] = ()) -> Claim:
        """Run the claim script (which also reads the parents' outputs)."""
        keys = [_key(run_id, "states"), _key(run_id, "claims"), _key(run_id, "out")]
        raw = self._claim(keys=keys, args=[task_id, token, *parents])
        state = cast(ClaimResult, raw[0])
        outputs = {p: v for p, v in zip(parents, raw[1:], strict=False) if v != ""}
        return Claim(state, outputs)

    def set_state(self, run_id: str, task_id: str, state: str) -> None:
        """Set a display state such as ``retry``."""
        self.client.hset(_key(run_id, "states"), task_id, state)

    def outputs(self, run_id: str, task_ids: Sequence[str]) -> dict[str, str]:
        """HMGET the outputs of ``task_ids``."""
        if not task_ids:
            return {}
        values = self.client.hmget(_key(run_id, "out"), list(task_ids))
        return {t: str(v) for t, v in zip(task_ids, values, strict=True) if v is not None}

    def finish(
        self,
        run_id: str,
        task_id: str,
        state: Literal["ok", "failed"],
        output: str | None,
        skip: Sequence[str],
        total: int,
        joins: Sequence[tuple[str, int]] = (),
        force: bool = False,
    ) -> FinishResult:
        """Run the finish script: state, output, skips, join arrivals and completion at once."""
        keys = [_key(run_id, "states"), _key(run_id, "out"), _key(run_id, "meta")]
        keys += [_key(run_id, f"arr:{child}") for child, _ in joins]
        args: list[str | int] = [task_id, state, output or "", total, len(skip), self.ttl]
        args += ["1" if force else "0", *(need for _, need in joins), *skip]
        raw = self._finish(keys=keys, args=args)
        complete, ok, failed, skipped, n_newly, *rest = raw
        newly, ready = rest[: int(n_newly)], rest[int(n_newly) :]
        return FinishResult(
            complete=bool(int(complete)),
            newly_skipped=tuple(newly),
            counts={"ok": int(ok), "failed": int(failed), "skipped": int(skipped)},
            ready=tuple(joins[int(i) - 1][0] for i in ready),
        )

    def mark_done(self, run_id: str, status: str, fields: Mapping[str, Any]) -> None:
        """Set the final status and push the wake-up token."""
        mapping: dict[FieldT, EncodableT] = {k: json.dumps(v) for k, v in fields.items()}
        mapping["status"] = json.dumps(status)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(_key(run_id, "meta"), mapping=mapping)
        pipe.rpush(_key(run_id, "done"), status)
        pipe.expire(_key(run_id, "done"), self.ttl)
        pipe.execute()

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Read meta (and states) in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(_key(run_id, "meta"))
        if with_states:
            pipe.hgetall(_key(run_id, "states"))
        results = pipe.execute()
        raw: dict[str, str] = results[0]
        if not raw:
            return None
        counts = {k: int(raw.get(f"n_{k}", 0)) for k in ("ok", "failed", "skipped")}
        counts["total"] = int(raw.get("total", 0))
        meta: dict[str, Any] = {}
        for k, v in raw.items():
            if k.startswith("n_") or k in ("total", "complete"):
                continue
            try:
                meta[k] = json.loads(v)
            except ValueError:
                meta[k] = v
        status = str(meta.get("status", "running"))
        states = results[1] if with_states else None
        return RunSnapshot(status=status, counts=counts, states=states, meta=meta)

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Block on the run's ``done`` list (BLPOP) without consuming the token for others."""
        key = _key(run_id, "done")
        if self.client.llen(key):
            return True
        popped = self.client.blpop([key], timeout=max(timeout, 0.01))
        if popped is None:
            return False
        # Put the token back so other waiters (and later calls) also see the run as done.
        self.client.rpush(key, popped[1])
        return True


__all__ = ["TERMINAL", "RedisRunStore"]
