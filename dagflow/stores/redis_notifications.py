"""The notify outbox and run deadlines on Redis (see :mod:`dagflow.stores.notifications`).

Mixed into :class:`~dagflow.stores.redis.RedisRunStore`. Keys (:mod:`dagflow.keys`):
``dagflow:notices`` (zset: notice -> due ms), ``dagflow:notices:tries`` (hash: failed
attempts), ``dagflow:deadlines`` (zset: run -> deadline ms) and each run's
``dagflow:run:{<run_id>}:notices`` hash (how each delivery stands, for ``dagflow status``).
Due times use the Redis server's clock, like leases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis

from dagflow.keys import DEADLINES, EVENTS_STREAM, NOTICE_TRIES, NOTICES, run_key, step_member
from dagflow.stores.notifications import Notice, NoticeBatch, NoticeState

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

#: Claim a run's missed deadline. KEYS: deadlines, notices, the run's meta, the run's notices
#: hash, the event stream. ARGV: run id, hold ms, ttl s, event line, stream cap, notice ids...
#: Only the caller whose ZREM removes the entry goes on: exactly one per run.
MISS_DEADLINE = (
    _NOW
    + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 or redis.call('HEXISTS', KEYS[3], 'status') == 1 then
  return 0
end
local due = now_ms() + tonumber(ARGV[2])
for i = 6, #ARGV do
  redis.call('ZADD', KEYS[2], due, ARGV[1] .. '\\t' .. ARGV[i])
  redis.call('HSET', KEYS[4], ARGV[i], '{"state":"pending","attempts":0}')
end
if #ARGV >= 6 then redis.call('EXPIRE', KEYS[4], tonumber(ARGV[3])) end
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'log', 'events', 'data', ARGV[4])
end
return 1
"""
)

#: Claim due notices. KEYS: notices, tries. ARGV: limit, lease ms. Returns member, tries...
CLAIM_NOTICES = (
    _NOW
    + """
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), m)
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m) or '0'
end
return out
"""
)

#: Re-arm a notice still in the outbox after a failed attempt. KEYS: notices, tries, the run's
#: notices hash. ARGV: member, due in ms, notice id, error.
RETRY_NOTICE = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[2]), ARGV[1])
local tries = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[3], ARGV[3],
  cjson.encode({state = 'retrying', attempts = tries, error = ARGV[4]}))
return 1
"""
)


class RedisNotices:
    """The notify outbox and deadlines of :class:`~dagflow.stores.redis.RedisRunStore`."""

    client: redis.Redis
    ttl: int
    writes_events: bool
    events_maxlen: int | None

    #: The store's own (declared here so this half type-checks; a stub method here would
    #: shadow a sibling half's real one in the store's MRO).
    _now_ms: Callable[[], int]
    _event_line: Callable[[Mapping[str, Any] | None], str]

    def _notice_scripts(self) -> None:
        self._miss_deadline = self.client.register_script(MISS_DEADLINE)
        self._claim_notices = self.client.register_script(CLAIM_NOTICES)
        self._retry_notice = self.client.register_script(RETRY_NOTICE)

    def _on_created(self, pipe: Any, run_id: str, meta: Mapping[str, Any]) -> None:
        """Index the new run's deadline in ``create_run``'s transaction."""
        deadline_at = meta.get("deadline_at")
        if isinstance(deadline_at, int | float) and not isinstance(deadline_at, bool):
            pipe.zadd(DEADLINES, {run_id: int(deadline_at * 1000)})

    def _on_done(self, pipe: Any, run_id: str, notices: NoticeBatch | None) -> None:
        """Drop the deadline and write the notices in ``mark_done``'s transaction."""
        pipe.zrem(DEADLINES, run_id)
        if not notices or not notices.ids:
            return
        due = self._now_ms() + int(notices.hold_s * 1000)
        pipe.zadd(NOTICES, {step_member(run_id, n): due for n in notices.ids})
        pending = NoticeState("", "pending").to_json()
        pipe.hset(run_key(run_id, "notices"), mapping=dict.fromkeys(notices.ids, pending))
        pipe.expire(run_key(run_id, "notices"), self.ttl)

    def due_deadlines(self, limit: int) -> list[str]:
        """Runs whose deadline (Redis server time) has passed."""
        due = self.client.zrangebyscore(DEADLINES, "-inf", self._now_ms(), start=0, num=limit)
        return [str(r) for r in due]

    def miss_deadline(
        self, run_id: str, notices: NoticeBatch, event: Mapping[str, Any] | None = None
    ) -> bool:
        """Run the claim script (see :data:`MISS_DEADLINE`)."""
        keys = [DEADLINES, NOTICES, run_key(run_id, "meta"), run_key(run_id, "notices")]
        keys.append(EVENTS_STREAM)
        args: list[str | int] = [run_id, int(notices.hold_s * 1000), self.ttl]
        args += [self._event_line(event), self.events_maxlen or 0, *notices.ids]
        return bool(int(self._miss_deadline(keys=keys, args=args)))

    def claim_notices(self, limit: int, lease_s: float) -> list[Notice]:
        """Run the claim script: due notices, each held ``lease_s``."""
        raw = self._claim_notices(keys=[NOTICES, NOTICE_TRIES], args=[limit, int(lease_s * 1000)])
        claimed = []
        for i in range(0, len(raw), 2):
            run_id, _, notice_id = str(raw[i]).partition("\t")
            claimed.append(Notice(run_id, notice_id, int(raw[i + 1]) + 1))
        return claimed

    def settle_notice(self, notice: Notice, sent: bool, error: str | None = None) -> None:
        """Drop the notice from the outbox and keep how it ended."""
        member = step_member(notice.run_id, notice.notice_id)
        state = NoticeState(
            notice.notice_id, "sent" if sent else "failed", notice.attempt, None if sent else error
        )
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(NOTICES, member)
        pipe.hdel(NOTICE_TRIES, member)
        pipe.hset(run_key(notice.run_id, "notices"), notice.notice_id, state.to_json())
        pipe.expire(run_key(notice.run_id, "notices"), self.ttl)
        pipe.execute()

    def retry_notice(self, notice: Notice, due_in_s: float, error: str) -> bool:
        """Run the re-arm script (nothing if the notice was settled meanwhile)."""
        member = step_member(notice.run_id, notice.notice_id)
        keys = [NOTICES, NOTICE_TRIES, run_key(notice.run_id, "notices")]
        args: list[str | int] = [member, max(int(due_in_s * 1000), 1), notice.notice_id, error]
        return bool(int(self._retry_notice(keys=keys, args=args)))

    def notices(self, run_id: str) -> list[NoticeState]:
        """The run's notices hash, by id."""
        raw: dict[str, str] = self.client.hgetall(run_key(run_id, "notices"))  # type: ignore[assignment]
        return [NoticeState.from_json(k, raw[k]) for k in sorted(raw)]


__all__ = ["CLAIM_NOTICES", "MISS_DEADLINE", "RETRY_NOTICE", "RedisNotices"]
