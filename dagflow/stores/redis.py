"""Run store on Redis: Lua scripts make each step of a lease, a join and the outbox atomic.

Keys are listed in :mod:`dagflow.keys`. A run's own keys expire ``ttl`` seconds after the run
starts (``DAGFLOW_RUN_TTL_S``, 7 days), far longer than a run, unlike Celery's own chord
counters which expire with ``result_expires``. Lease expiries use the Redis server's clock
(``TIME``), so workers on hosts whose clocks disagree still agree on when a lease ends.

The scripts touch keys shared by all runs (the sweeper's indexes), so dagflow needs one
Redis server (or a primary with replicas / Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from dagflow.keys import (
    EVENTS_STREAM,
    LEASES,
    OUTBOX,
    OUTBOX_RESENDS,
    RUN_HISTORY_MAX,
    RUN_INDEX,
    RUNS,
    RUNS_STARTED,
    run_key,
    step_member,
)
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.stores.base import (
    TERMINAL,
    AttemptEnd,
    CancelResult,
    Claim,
    ClaimResult,
)
from dagflow.stores.event_stream import encode
from dagflow.stores.notifications import NoticeBatch
from dagflow.stores.redis_admission import RedisAdmission
from dagflow.stores.redis_finish import RedisFinish, wide_parents
from dagflow.stores.redis_notifications import RedisNotices
from dagflow.stores.redis_recovery import RedisRecovery
from dagflow.stores.redis_scripts import CANCEL, CLAIM, RELEASE, RENEW, RETRY
from dagflow.stores.redis_views import RedisRunViews

#: Placeholders for the attempt and fencing numbers in a ``task_start`` line (see
#: :meth:`RedisRunStore._start_line`).
_ATTEMPT, _FENCE = "\x00attempt", "\x00fence"


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _started_ms(meta: Mapping[str, Any], default: int) -> int:
    """The run's ``started_at`` (epoch seconds) in ms, for the listing index."""
    try:
        return int(float(meta["started_at"]) * 1000)
    except (KeyError, TypeError, ValueError):
        return default


def run_index(meta: Mapping[str, Any]) -> str:
    """The run's entry in :data:`~dagflow.keys.RUN_INDEX`: ``<dag_name>\t<tenant_id>``."""
    return f"{meta.get('dag_name', '')}\t{meta.get('tenant_id', '')}"


class RedisRunStore(RedisAdmission, RedisRunViews, RedisNotices, RedisRecovery, RedisFinish):
    """A :class:`~dagflow.stores.base.RunStore` on a Redis server.

    Args:
        url: ``redis://host:port/db`` of the server (the broker's or result backend's), or a
            ``sentinel://`` URL of a primary (see :mod:`dagflow.redis_url`).
        ttl: Seconds every key of a run lives after the run starts.
        events_maxlen: The event stream's cap, when the store writes events itself.
        master_name: The Sentinel primary's name (``DAGFLOW_REDIS_MASTER_NAME``).
    """

    def __init__(
        self,
        url: str,
        ttl: int = 7 * 24 * 3600,
        events_maxlen: int | None = None,
        *,
        master_name: str = DEFAULT_MASTER_NAME,
    ) -> None:
        self.url = url
        self.master_name = master_name
        self.ttl = ttl
        #: With a cap, the events handed to finish, retry, create_run and mark_done are
        #: appended to the event stream in the same atomic step as the change they report.
        self.events_maxlen = events_maxlen
        self.writes_events = events_maxlen is not None
        self.client: redis.Redis = redis_client(
            url, master_name=master_name, decode_responses=True, health_check_interval=30
        )
        self._claim = self.client.register_script(CLAIM)
        self._renew = self.client.register_script(RENEW)
        self._retry = self.client.register_script(RETRY)
        self._finish_scripts()
        self._recovery_scripts()
        self._release = self.client.register_script(RELEASE)
        self._cancel = self.client.register_script(CANCEL)
        self._admission_scripts()
        self._notice_scripts()

    def _event_line(self, event: Mapping[str, Any] | None) -> str:
        return encode(event) if event is not None and self.writes_events else ""

    def create_run(
        self,
        run_id: str,
        plan: str,
        meta: Mapping[str, Any],
        task_ids: Sequence[str],
        roots: Sequence[str] = (),
        grace_s: float = 30.0,
        event: Mapping[str, Any] | None = None,
        reused: Mapping[str, str] | None = None,
        arrivals: Mapping[str, Sequence[str]] | None = None,
        pending: bool = False,
        maps: Mapping[str, tuple[int, int, int]] | None = None,
    ) -> None:
        """Store the plan, metadata, pending states, the indexes and the roots' outbox.

        A ``pending`` run (waiting for a slot) is stored without the sweeper's indexes, the
        outbox and the event: :meth:`activate` adds them when it is admitted. The listing
        index (:data:`~dagflow.keys.RUNS_STARTED`) is trimmed here of runs older than the
        TTL (their keys are gone) and beyond ``RUN_HISTORY_MAX``.
        """
        fields: dict[FieldT, EncodableT] = {k: json.dumps(v) for k, v in meta.items()}
        reused = dict(reused or {})
        fields.update(n_ok=str(len(reused)), n_failed="0", n_skipped="0", n_cancelled="0")
        fields["total"] = str(len(task_ids))
        states: dict[FieldT, EncodableT] = dict.fromkeys(task_ids, "pending")
        states.update(dict.fromkeys(reused, "ok"))
        states.update(dict.fromkeys(maps or {}, "mapped"))
        now_ms = self._now_ms()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(run_key(run_id, "plan"), plan, ex=self.ttl)
        pipe.hset(run_key(run_id, "meta"), mapping=fields)
        pipe.hset(run_key(run_id, "states"), mapping=states)
        # Placeholder fields so these hashes exist now and carry the run's expiry.
        pipe.hset(run_key(run_id, "claims"), "_", "")
        outputs: dict[FieldT, EncodableT] = {"_": ""}
        outputs.update(reused)
        pipe.hset(run_key(run_id, "out"), mapping=outputs)
        wide = wide_parents(plan)
        if wide:
            pipe.hset(run_key(run_id, "parents"), mapping=cast(dict[FieldT, EncodableT], wide))
            pipe.expire(run_key(run_id, "parents"), self.ttl)
        for child, parents in (arrivals or {}).items():
            if parents:
                pipe.sadd(run_key(run_id, f"arr:{child}"), *parents)
                pipe.expire(run_key(run_id, f"arr:{child}"), self.ttl)
        pipe.hset(run_key(run_id, "info"), "_", "")
        if maps:
            preset: dict[FieldT, EncodableT] = {}
            for task_id, (length, left, nxt) in maps.items():
                preset.update({f"{task_id}\tn": length, f"{task_id}\tleft": left})
                preset[f"{task_id}\tnext"] = nxt
            pipe.hset(run_key(run_id, "maps"), mapping=preset)
            pipe.expire(run_key(run_id, "maps"), self.ttl)
        for part in ("meta", "states", "claims", "out", "info"):
            pipe.expire(run_key(run_id, part), self.ttl)
        if not pending:
            pipe.hset(RUN_INDEX, run_id, run_index(meta))
            pipe.zadd(RUNS, {run_id: now_ms})
        pipe.zadd(RUNS_STARTED, {run_id: _started_ms(meta, now_ms)})
        pipe.zremrangebyscore(RUNS_STARTED, "-inf", f"({now_ms - self.ttl * 1000}")
        pipe.zremrangebyrank(RUNS_STARTED, 0, -RUN_HISTORY_MAX - 1)
        if roots and not pending:
            due = now_ms + _ms(grace_s)
            pipe.zadd(OUTBOX, {step_member(run_id, r): due for r in roots})
        if not pending:
            self._xadd(pipe, event)
        self._on_created(pipe, run_id, meta)
        pipe.execute()

    def _xadd(self, pipe: Any, event: Mapping[str, Any] | None) -> None:
        line = self._event_line(event)
        if line:
            fields = {"log": "events", "data": line}
            pipe.xadd(EVENTS_STREAM, fields, maxlen=self.events_maxlen, approximate=True)

    def _now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def load_plan(self, run_id: str) -> str | None:
        """Return the plan JSON, or None."""
        return cast("str | None", self.client.get(run_key(run_id, "plan")))

    def claim(
        self,
        run_id: str,
        task_id: str,
        token: str,
        worker: str = "",
        lease_s: float = 30.0,
        parents: Sequence[str] = (),
        event: Mapping[str, Any] | None = None,
    ) -> Claim:
        """Run the claim script (which also reads the parents' outputs).

        With :attr:`writes_events`, ``event`` (``task_start``; the script puts the real
        ``attempt`` and ``fence`` in) is appended by the script when it grants the lease: no
        round trip of its own on every step.
        """
        keys = [
            run_key(run_id, "states"),
            run_key(run_id, "claims"),
            run_key(run_id, "out"),
            LEASES,
            OUTBOX,
            RUNS,
            OUTBOX_RESENDS,
            run_key(run_id, "meta"),
            EVENTS_STREAM,
        ]
        head, middle, tail = self._start_line(event)
        args: list[str | int] = [task_id, token, worker, _ms(lease_s), run_id]
        args.append(self.events_maxlen or 0)
        raw = self._claim(keys=keys, args=[*args, head, middle, tail, *parents])
        state = cast(ClaimResult, raw[0])
        if state == "busy":
            return Claim("busy", holder=str(raw[1]))
        if state == "cancelled" and len(raw) > 1:
            return Claim("cancelled", recorded=True, complete=bool(int(raw[2])))
        if state != "run":
            return Claim(state)
        outputs = {p: v for p, v in zip(parents, raw[4:], strict=False) if v != ""}
        return Claim("run", outputs, int(raw[1]), int(raw[2]), str(raw[3] or ""))

    def _start_line(self, event: Mapping[str, Any] | None) -> tuple[str, str, str]:
        """``task_start``'s JSON line cut where the claim script puts attempt and fence.

        ``("", "", "")`` when there is nothing to write. The record is encoded with two
        markers in place of the numbers (JSON escapes the NUL they start with, so no other
        value can contain them), and cut around them; the record's field order is kept.
        """
        if event is None or not self.writes_events:
            return "", "", ""
        line = encode({**event, "attempt": _ATTEMPT, "fence": _FENCE})
        head, _, rest = line.partition(json.dumps(_ATTEMPT))
        middle, _, tail = rest.partition(json.dumps(_FENCE))
        return head, middle, tail

    def renew(self, leases: Sequence[tuple[str, str, int]], lease_s: float) -> list[bool]:
        """Run the renew script for every lease in one call."""
        if not leases:
            return []
        keys = [LEASES, RUNS, *(run_key(run_id, "claims") for run_id, _, _ in leases)]
        args: list[str | int] = [_ms(lease_s)]
        for run_id, task_id, fence in leases:
            args += [task_id, fence, run_id]
        return [bool(int(v)) for v in self._renew(keys=keys, args=args)]

    def release(self, run_id: str, task_id: str, token: str) -> bool:
        """Run the release script: expire ``token``'s lease now."""
        keys = [run_key(run_id, "claims"), LEASES]
        return bool(int(self._release(keys=keys, args=[task_id, token, run_id])))

    def retry(
        self,
        run_id: str,
        task_id: str,
        fence: int,
        due_in_s: float,
        grace_s: float,
        event: Mapping[str, Any] | None = None,
        end: AttemptEnd | None = None,
    ) -> bool:
        """Run the retry script: release the lease, put the step in the outbox, keep ``end``."""
        keys = [
            run_key(run_id, "states"),
            run_key(run_id, "claims"),
            LEASES,
            OUTBOX,
            RUNS,
            EVENTS_STREAM,
            run_key(run_id, "info"),
        ]
        args: list[str | int] = [task_id, fence, _ms(due_in_s + grace_s), run_id]
        args += [self._event_line(event), self.events_maxlen or 0, end.to_json() if end else ""]
        return bool(int(self._retry(keys=keys, args=args)))

    def outputs(self, run_id: str, task_ids: Sequence[str]) -> dict[str, str]:
        """HMGET the outputs of ``task_ids``."""
        if not task_ids:
            return {}
        values = self.client.hmget(run_key(run_id, "out"), list(task_ids))
        return {t: str(v) for t, v in zip(task_ids, values, strict=True) if v is not None}

    def cancel(self, run_id: str, force: bool = False) -> CancelResult:
        """Run the cancel script (flag, open tasks, outbox and leases at once)."""
        keys = [run_key(run_id, part) for part in ("states", "meta", "claims")]
        keys += [LEASES, OUTBOX, OUTBOX_RESENDS]
        raw = self._cancel(keys=keys, args=[run_id, "1" if force else "0"])
        if raw[0] == "gone":
            return CancelResult("gone")
        if raw[0] == "finished":
            status = json.loads(raw[1]) if raw[1] else "finishing"
            return CancelResult("finished", status=str(status))
        n_newly = int(raw[2])
        newly, rest = raw[3 : 3 + n_newly], raw[3 + n_newly :]
        running = tuple((str(rest[i]), str(rest[i + 1])) for i in range(0, len(rest), 2))
        snap = self.snapshot(run_id)
        return CancelResult(
            "cancelled",
            newly_cancelled=tuple(str(t) for t in newly),
            running=running,
            complete=bool(int(raw[1])),
            counts=dict(snap.counts) if snap else {},
        )

    def unsent(self, run_id: str, task_ids: Sequence[str]) -> list[str]:
        """Tasks of ``task_ids`` that are pending and in the outbox."""
        if not task_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        pipe.zmscore(OUTBOX, [step_member(run_id, t) for t in task_ids])
        pipe.hmget(run_key(run_id, "states"), list(task_ids))
        scores, states = pipe.execute()
        return [
            t
            for t, score, state in zip(task_ids, scores, states, strict=True)
            if score is not None and state == "pending"
        ]

    def mark_done(
        self,
        run_id: str,
        status: str,
        fields: Mapping[str, Any],
        event: Mapping[str, Any] | None = None,
        notices: NoticeBatch | None = None,
    ) -> None:
        """Set the final status, drop the run from the index and push the wake-up token (and
        drop its deadline, write its ``notices``: :mod:`dagflow.stores.notifications`)."""
        mapping: dict[FieldT, EncodableT] = {k: json.dumps(v) for k, v in fields.items()}
        mapping["status"] = json.dumps(status)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(run_key(run_id, "meta"), mapping=mapping)
        pipe.rpush(run_key(run_id, "done"), status)
        pipe.expire(run_key(run_id, "done"), self.ttl)
        pipe.zrem(RUNS, run_id)
        pipe.hdel(RUN_INDEX, run_id)
        self._xadd(pipe, event)
        self._on_done(pipe, run_id, notices)
        pipe.execute()

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Block on the run's ``done`` list (BLPOP) without consuming the token for others."""
        key = run_key(run_id, "done")
        if self.client.llen(key):
            return True
        popped = self.client.blpop([key], timeout=max(timeout, 0.01))
        if popped is None:
            return False
        # Put the token back so other waiters (and later calls) also see the run as done.
        self.client.rpush(key, popped[1])
        return True


__all__ = ["TERMINAL", "RedisRunStore"]
