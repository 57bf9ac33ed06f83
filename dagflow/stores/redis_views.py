"""The read side of the Redis run store: snapshots, task details, listings, inspection.

These reads never change a run (``list_runs`` only drops index entries of expired runs), so
``dagflow status``, ``runs`` and ``outputs`` may call them from any host at any time.
:class:`~dagflow.stores.redis.RedisRunStore` inherits them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import redis

from dagflow.keys import OUTBOX, RUN_INDEX, RUNS_STARTED, run_key, step_member
from dagflow.stores.base import (
    COUNTED,
    TERMINAL,
    AttemptEnd,
    RunInspection,
    RunSnapshot,
    TaskInfo,
    attempts_started,
    run_matches,
)

#: Runs whose metadata ``list_runs`` reads per round trip.
LIST_PAGE = 200


class RedisRunViews:
    """Read-only queries on a run store's Redis client (see the module docstring)."""

    client: redis.Redis

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Read meta (and states) in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(run_key(run_id, "meta"))
        if with_states:
            pipe.hgetall(run_key(run_id, "states"))
        results = pipe.execute()
        return _snapshot(run_id, results[0], results[1] if with_states else None)

    def tasks(self, run_id: str) -> list[TaskInfo] | None:
        """Read states, leases and attempt ends in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(run_key(run_id, "states"))
        pipe.hgetall(run_key(run_id, "claims"))
        pipe.hgetall(run_key(run_id, "info"))
        states, claims, info = pipe.execute()
        if not states:
            return None
        out = []
        for task_id, state in states.items():
            parts = [*str(claims.get(task_id, "")).split("\t"), "", "", "", "", ""]
            fence, fails = int(parts[1] or 0), int(parts[4] or 0)
            out.append(
                TaskInfo(
                    task_id=task_id,
                    state=state,
                    attempts=attempts_started(state, fence, fails),
                    worker=parts[2],
                    fence=fence,
                    last=AttemptEnd.from_json(info.get(task_id)),
                )
            )
        return out

    def list_runs(
        self,
        *,
        tenant_id: str | None = None,
        dag_name: str | None = None,
        status: str | None = None,
        limit: int = 20,
        before: tuple[int, str] | None = None,
    ) -> list[RunSnapshot]:
        """Walk the start-time index newest first, a page of metas per round trip.

        With ``before`` (start ms, run id), the walk starts after that run: at its start
        time, only ids below it (``ZREVRANGEBYSCORE`` orders ties by id, descending).
        Entries whose run's keys expired are dropped from the index on the way.
        """
        found: list[RunSnapshot] = []
        seen: set[str] = set()  # runs started meanwhile shift the ranks of the older ones
        top: int | str = "+inf" if before is None else before[0]
        start = 0
        while len(found) < limit:
            page: list[tuple[str, float]] = self.client.zrevrangebyscore(  # type: ignore[assignment]
                RUNS_STARTED, top, "-inf", start=start, num=LIST_PAGE, withscores=True
            )
            if not page:
                break
            start += len(page)
            run_ids = [
                str(r)
                for r, score in page
                if before is None or int(score) < before[0] or str(r) < before[1]
            ]
            pipe = self.client.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hgetall(run_key(run_id, "meta"))
            gone = []
            for run_id, raw in zip(run_ids, pipe.execute(), strict=True):
                if run_id in seen:
                    continue
                seen.add(run_id)
                if not raw:
                    gone.append(run_id)
                    continue
                snap = _snapshot(run_id, raw, None)
                if snap is not None and run_matches(snap, tenant_id, dag_name, status):
                    found.append(snap)
            if gone:
                self.client.zrem(RUNS_STARTED, *gone)
                start -= len(gone)
        return found[:limit]

    def inspect(self, run_id: str) -> RunInspection:
        """Read states, leases, outbox entries and the index entry of one run."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(run_key(run_id, "states"))
        pipe.hgetall(run_key(run_id, "claims"))
        pipe.hmget(run_key(run_id, "meta"), ["status", "cancelled"])
        pipe.hget(RUN_INDEX, run_id)
        pipe.time()
        states, claims, (status, cancelled), index, (sec, micros) = pipe.execute()
        now_ms = int(sec) * 1000 + int(micros) // 1000
        dag_name, _, tenant = str(index or "\t").partition("\t")
        open_tasks = [t for t, s in states.items() if s not in TERMINAL]
        live: set[str] = set()
        for task in open_tasks:
            parts = str(claims.get(task, "")).split("\t")
            if len(parts) >= 4 and parts[0] and int(parts[3] or 0) > now_ms:
                live.add(task)
        if open_tasks:
            scores = self.client.zmscore(OUTBOX, [step_member(run_id, t) for t in open_tasks])
            live.update(t for t, score in zip(open_tasks, scores, strict=True) if score is not None)
        return RunInspection(
            exists=bool(states),
            done=status is not None,
            dag_name=dag_name,
            tenant_id=tenant,
            states=states,
            live=frozenset(live),
            cancelled=cancelled is not None,
        )


def _snapshot(run_id: str, raw: Mapping[str, str], states: Any) -> RunSnapshot | None:
    """A snapshot from the ``meta`` hash's raw fields (None if there are none)."""
    if not raw:
        return None
    counts = {k: int(raw.get(f"n_{k}", 0)) for k in COUNTED}
    counts["total"] = int(raw.get("total", 0))
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        if k.startswith("n_") or k in ("total", "complete"):
            continue
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    status = str(meta.get("status") or ("pending" if meta.get("pending") else "running"))
    return RunSnapshot(status=status, counts=counts, states=states, meta=meta, run_id=run_id)
