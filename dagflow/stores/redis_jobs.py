"""Jobs in Redis: the :class:`~dagflow.stores.jobs.JobStore` shared by every scheduler,
worker and ``dagflow jobs`` (keys in :mod:`dagflow.keys`).

Each job is a hash: the job as one JSON document (``job``, encoded and decoded by pydantic's
Rust core: a tick may add thousands) and its ``status`` (readable with ``HGET`` alone).
Moving jobs between the queue, the draining set and the retries index is one Lua script
each, so two schedulers never drain the same job and a sweep never loses one; a status
change is an optimistic transaction (``WATCH``), so two hooks of the same job never
overwrite each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from dagflow.keys import JOBS, JOBS_DRAINING, JOBS_QUEUE, JOBS_RETRIES, job_key
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client
from dagflow.scheduling.job import Job, JobStatus
from dagflow.stores.jobs import Change, select

#: Pop up to ARGV[1] job ids from the queue and mark them draining at ARGV[2] (ms).
DRAIN = """
local taken = {}
for i = 1, tonumber(ARGV[1]) do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  taken[#taken + 1] = id
end
return taken
"""
#: Move drained jobs older than ARGV[1] (ms) back to the queue's head, oldest first there.
REQUEUE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for i = #stale, 1, -1 do
  if redis.call('ZREM', KEYS[1], stale[i]) == 1 then
    redis.call('LPUSH', KEYS[2], stale[i])
  end
end
return stale
"""
#: Due retries (score <= ARGV[1]), each re-armed at ARGV[3] until its start is confirmed.
TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
end
return due
"""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


#: Jobs read per round trip when a listing filters (most listings stop after the first).
LIST_BATCH = 200


def encode(job: Job) -> Mapping[FieldT, EncodableT]:
    """The job's hash fields."""
    return {"job": job.model_dump_json(), "status": job.status.value}


def decode(text: str | None) -> Job | None:
    """The job of a hash's ``job`` field (None when missing: expired or never written)."""
    return None if not text else Job.model_validate_json(text)


class RedisJobStore:
    """A :class:`~dagflow.stores.jobs.JobStore` on a Redis server.

    Args:
        url: ``redis://host:port/db`` of the run store's server, or its ``sentinel://`` URL.
        ttl: Seconds a job is kept after its last change (``DAGFLOW_RUN_TTL_S``).
        master_name: The Sentinel primary's name (``DAGFLOW_REDIS_MASTER_NAME``).
        **options: More ``redis.Redis`` options (the dashboard's short timeouts).
    """

    def __init__(
        self,
        url: str,
        ttl: int = 7 * 24 * 3600,
        *,
        master_name: str = DEFAULT_MASTER_NAME,
        **options: Any,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.client: redis.Redis = redis_client(
            url,
            master_name=master_name,
            decode_responses=True,
            health_check_interval=30,
            **options,
        )
        self._drain = self.client.register_script(DRAIN)
        self._requeue = self.client.register_script(REQUEUE)
        self._take_due = self.client.register_script(TAKE_DUE)

    def add(self, jobs: Sequence[Job], *, queue: bool = True) -> None:
        if not jobs:
            return
        pipe = self.client.pipeline(transaction=True)
        newest = 0.0
        for job in jobs:
            pipe.hset(job_key(job.id), mapping=encode(job))
            pipe.expire(job_key(job.id), self.ttl)
            pipe.zadd(JOBS, {job.id: _ms(job.enqueued_at)})
            newest = max(newest, job.enqueued_at)
        if queue:
            pipe.rpush(JOBS_QUEUE, *[job.id for job in jobs])
        pipe.zremrangebyscore(JOBS, "-inf", f"({_ms(newest - self.ttl)}")
        pipe.execute()

    def _load(self, ids: Sequence[str], index: str | None = None) -> list[Job]:
        """The jobs of ``ids`` that still exist; expired ones are dropped from ``index``."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(job_key(job_id), "job")
        found = [decode(text) for text in pipe.execute()]
        gone = [job_id for job_id, job in zip(ids, found, strict=True) if job is None]
        if gone and index is not None:
            self.client.zrem(index, *gone)
        return [job for job in found if job is not None]

    def drain(self, limit: int, now: float) -> list[Job]:
        ids = self._drain(keys=[JOBS_QUEUE, JOBS_DRAINING], args=[limit, _ms(now)])
        return self._load(ids, JOBS_DRAINING)

    def sent(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self.client.zrem(JOBS_DRAINING, *job_ids)

    def requeue_drained(self, before: float, limit: int = 1000) -> list[str]:
        back: list[str] = self._requeue(keys=[JOBS_DRAINING, JOBS_QUEUE], args=[_ms(before), limit])
        return back

    def get(self, job_id: str) -> Job | None:
        return decode(cast(str | None, self.client.hget(job_key(job_id), "job")))

    def update(self, job_id: str, change: Change) -> Job | None:
        key = job_key(job_id)
        while True:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    job = decode(cast(str | None, pipe.hget(key, "job")))
                    new = change(job) if job is not None else None
                    if new is None:
                        return None
                    pipe.multi()
                    pipe.hset(key, mapping=encode(new))
                    pipe.expire(key, self.ttl)
                    if new.status == JobStatus.RETRY and new.retry_at is not None:
                        pipe.zadd(JOBS_RETRIES, {job_id: _ms(new.retry_at)})
                    else:
                        pipe.zrem(JOBS_RETRIES, job_id)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue  # another hook changed the job first: apply to the new version

    def take_due_retries(self, now: float, limit: int, lease_s: float) -> list[Job]:
        ids = self._take_due(keys=[JOBS_RETRIES], args=[_ms(now), limit, _ms(now + lease_s)])
        return self._load(ids, JOBS_RETRIES)

    def retry_started(self, job_id: str) -> None:
        self.client.zrem(JOBS_RETRIES, job_id)

    def jobs(
        self,
        *,
        schedule: str | None = None,
        tenant: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        scan: int = 5000,
    ) -> list[Job]:
        out: list[Job] = []
        batch = limit if schedule is tenant is status is None else max(limit, LIST_BATCH)
        for start in range(0, scan, batch):
            stop = min(start + batch, scan) - 1
            ids = cast(list[str], self.client.zrevrange(JOBS, start, stop))
            out += select(self._load(ids), schedule, tenant, status, limit - len(out))
            if len(out) >= limit or len(ids) < stop - start + 1:
                break
        return out

    def queued(self) -> int:
        return int(self.client.llen(JOBS_QUEUE))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


__all__ = ["RedisJobStore"]
