"""One contract, two job stores: Redis (a real server) and its in-memory twin."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dagflow.scheduling.job import Job, JobStatus, mark_ended, mark_running
from dagflow.stores.jobs import JobStore, MemoryJobStore
from dagflow.stores.redis_jobs import RedisJobStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture(params=["memory", "redis"])
def jobs(request: pytest.FixtureRequest, scratch_redis: str) -> Iterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    store = RedisJobStore(scratch_redis, ttl=600)
    yield store
    store.close()


def job(n: int, *, schedule: str = "s", tenant: str = "acme", retries: int = 0) -> Job:
    return Job(
        id=f"j{n}",
        dag_path="dags/d.yaml",
        tenant_id=tenant,
        schedule_id=schedule,
        enqueued_at=1000.0 + n,
        max_retries=retries,
        run_id=f"r{n}",
        params={"n": n},
    )


def test_add_get_and_list_newest_first_with_filters(jobs: JobStore) -> None:
    jobs.add([job(1), job(2, schedule="t", tenant="other"), job(3)])
    assert jobs.get("j2") == job(2, schedule="t", tenant="other")
    assert jobs.get("nope") is None
    assert [j.id for j in jobs.jobs()] == ["j3", "j2", "j1"]
    assert [j.id for j in jobs.jobs(schedule="s")] == ["j3", "j1"]
    assert [j.id for j in jobs.jobs(tenant="other")] == ["j2"]
    assert [j.id for j in jobs.jobs(limit=1)] == ["j3"]
    assert jobs.jobs(status=JobStatus.RUNNING) == []
    assert jobs.queued() == 3


def test_drain_takes_at_most_limit_in_order_and_never_twice(jobs: JobStore) -> None:
    jobs.add([job(n) for n in range(1, 6)])
    assert [j.id for j in jobs.drain(2, now=2000.0)] == ["j1", "j2"]
    assert jobs.queued() == 3
    assert [j.id for j in jobs.drain(10, now=2000.0)] == ["j3", "j4", "j5"]
    assert jobs.drain(10, now=2000.0) == []


def test_concurrent_drains_share_the_queue_without_overlap(jobs: JobStore) -> None:
    jobs.add([job(n) for n in range(40)])
    taken: list[list[str]] = [[] for _ in range(4)]

    def drainer(i: int) -> None:
        while batch := jobs.drain(3, now=2000.0):
            taken[i].extend(j.id for j in batch)

    threads = [threading.Thread(target=drainer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    every = [j for batch in taken for j in batch]
    assert sorted(every) == sorted(f"j{n}" for n in range(40))


def test_drained_jobs_never_sent_come_back_first(jobs: JobStore) -> None:
    # Given two drained jobs of which only one was sent, and a job still queued
    jobs.add([job(1), job(2), job(3)])
    jobs.drain(2, now=2000.0)
    jobs.sent(["j1"])
    # When the lease has not passed: nothing comes back
    assert jobs.requeue_drained(before=2000.0) == []
    # When it has: the unsent one is queued again, ahead of the others
    assert jobs.requeue_drained(before=2000.5) == ["j2"]
    assert [j.id for j in jobs.drain(5, now=2001.0)] == ["j2", "j3"]


def test_update_applies_transitions_and_indexes_retries(jobs: JobStore) -> None:
    jobs.add([job(1, retries=1)])
    running = jobs.update("j1", lambda j: mark_running(j, "r1", 1500.0))
    assert running is not None and running.status == JobStatus.RUNNING
    # A transition that does not apply changes nothing
    assert jobs.update("j1", lambda j: mark_running(j, "r1", 1501.0)) is None
    assert jobs.update("unknown", lambda j: j) is None
    retry = jobs.update("j1", lambda j: mark_ended(j, "r1", "failed", 1600.0, 10.0, 100.0))
    assert retry is not None and retry.retry_at == 1610.0
    assert jobs.get("j1") == retry
    # Not due yet, then due: handed out once and re-armed until confirmed
    assert jobs.take_due_retries(1609.0, 10, lease_s=5.0) == []
    assert [j.id for j in jobs.take_due_retries(1610.0, 10, lease_s=5.0)] == ["j1"]
    assert jobs.take_due_retries(1611.0, 10, lease_s=5.0) == []
    assert [j.id for j in jobs.take_due_retries(1615.0, 10, lease_s=5.0)] == ["j1"]
    jobs.retry_started("j1")
    assert jobs.take_due_retries(9999.0, 10, lease_s=5.0) == []
    assert jobs.jobs(status=JobStatus.RETRY)[0].id == "j1"


def test_leaving_retry_drops_the_due_entry(jobs: JobStore) -> None:
    jobs.add([job(1, retries=1)])
    jobs.update("j1", lambda j: mark_ended(j, "r1", "failed", 1600.0, 10.0, 100.0))
    jobs.update("j1", lambda j: mark_running(j, "j1-2", 1605.0))
    assert jobs.take_due_retries(9999.0, 10, lease_s=5.0) == []


def test_concurrent_updates_are_not_lost(jobs: JobStore) -> None:
    jobs.add([job(1)])

    def bump(j: Job) -> Job:
        return j.model_copy(update={"updated_at": j.updated_at + 1})

    threads = [
        threading.Thread(target=lambda: [jobs.update("j1", bump) for _ in range(25)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    found = jobs.get("j1")
    assert found is not None and found.updated_at == 100


def test_expired_jobs_leave_the_queue_and_the_retries(scratch_redis: str) -> None:
    # Given jobs whose hashes expired (Redis only: memory jobs never expire)
    store = RedisJobStore(scratch_redis, ttl=600)
    try:
        store.add([job(1, retries=1), job(2)])
        store.update("j1", lambda j: mark_ended(j, "r1", "failed", 1600.0, 10.0, 100.0))
        store.client.delete("dagflow:job:j1", "dagflow:job:j2")
        # Then a drain and a due retry skip them and forget them
        assert store.drain(5, now=2000.0) == []
        assert store.requeue_drained(before=9999.0) == []
        assert store.take_due_retries(9999.0, 10, lease_s=5.0) == []
        assert store.client.zcard("dagflow:jobs:retries") == 0
    finally:
        store.close()


def test_the_memory_store_forgets_the_oldest_ended_jobs_beyond_its_cap() -> None:
    store = MemoryJobStore(max_jobs=3)
    store.add([job(1), job(2), job(3)])
    for n in (1, 2):
        store.update(f"j{n}", lambda j, n=n: mark_ended(j, f"r{n}", "success", 1500.0, 1, 1))
    store.add([job(4), job(5)])
    # j1 and j2 ended: they go; j3 is PENDING and stays even over the cap
    assert sorted(j.id for j in store.jobs()) == ["j3", "j4", "j5"]
