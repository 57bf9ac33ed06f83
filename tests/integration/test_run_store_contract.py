"""One contract, two stores: the Redis store and its in-memory twin behave the same."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from dagflow.stores import MemoryRunStore, RedisRunStore, RunStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_db: str) -> Iterator[RunStore]:
    if request.param == "memory":
        yield MemoryRunStore()
        return
    yield RedisRunStore(redis_db, ttl=600)


def new_run(store: RunStore, tasks: list[str]) -> str:
    run_id = uuid.uuid4().hex
    store.create_run(
        run_id, json.dumps({"plan": True}), {"dag_name": "d", "started_at": 1.0}, tasks
    )
    return run_id


def test_plan_meta_and_pending_states(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b"])
    assert store.load_plan(run_id) == '{"plan": true}'
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None
    assert snap.status == "running" and snap.meta["dag_name"] == "d"
    assert dict(snap.states or {}) == {"a": "pending", "b": "pending"}
    assert snap.counts == {"ok": 0, "failed": 0, "skipped": 0, "total": 2}
    assert store.load_plan("nope") is None and store.snapshot("nope") is None


def test_claim_lets_one_delivery_run(store: RunStore) -> None:
    run_id = new_run(store, ["a"])
    assert store.claim(run_id, "a", "msg-1") == "run"
    assert store.claim(run_id, "a", "msg-2") == "duplicate"  # a second copy of the message
    assert store.claim(run_id, "a", "msg-1") == "run"  # redelivery or retry of the same one
    store.finish(run_id, "a", "ok", '{"x": 1}', (), total=1)
    assert store.claim(run_id, "a", "msg-1") == "ok"


def test_finish_counts_once_and_completes_once(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b", "c"])
    first = store.finish(run_id, "a", "ok", "1", (), total=3)
    again = store.finish(run_id, "a", "ok", "1", (), total=3)
    assert not first.complete and again.counts == {"ok": 1, "failed": 0, "skipped": 0}
    failed = store.finish(run_id, "b", "failed", None, ["c"], total=3)
    assert failed.complete and failed.newly_skipped == ("c",)
    assert failed.counts == {"ok": 1, "failed": 1, "skipped": 1}
    repeat = store.finish(run_id, "b", "failed", None, ["c"], total=3)
    assert not repeat.complete and repeat.newly_skipped == ()
    assert store.outputs(run_id, ["a", "b"]) == {"a": "1"}


def test_arrive_is_a_set_not_a_counter(store: RunStore) -> None:
    run_id = new_run(store, ["p1", "p2", "child"])
    assert store.arrive(run_id, "child", "p1", 2, force=False) is False
    assert store.arrive(run_id, "child", "p1", 2, force=False) is False  # repeated arrival
    assert store.arrive(run_id, "child", "p2", 2, force=False) is True
    assert store.arrive(run_id, "child", "p2", 2, force=False) is False  # already sent
    assert store.arrive(run_id, "child", "p2", 2, force=True) is True  # redelivered parent


def test_concurrent_arrivals_make_the_child_ready_exactly_once(store: RunStore) -> None:
    parents = [f"p{i}" for i in range(50)]
    run_id = new_run(store, [*parents, "child"])
    ready: list[str] = []
    barrier = threading.Barrier(len(parents))

    def arrive(parent: str) -> None:
        barrier.wait()
        if store.arrive(run_id, "child", parent, len(parents), force=False):
            ready.append(parent)

    threads = [threading.Thread(target=arrive, args=(p,)) for p in parents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ready) == 1


def test_mark_done_wakes_waiters(store: RunStore) -> None:
    run_id = new_run(store, ["a"])
    assert store.wait_done(run_id, 0.05) is False
    timer = threading.Timer(0.1, store.mark_done, args=(run_id, "success", {"duration_s": 1.5}))
    timer.start()
    assert store.wait_done(run_id, 5) is True
    assert store.wait_done(run_id, 0.01) is True  # later waiters see it too
    snap = store.snapshot(run_id)
    assert snap is not None and snap.status == "success" and snap.meta["duration_s"] == 1.5


def test_redis_keys_expire_with_the_run(redis_db: str) -> None:
    store = RedisRunStore(redis_db, ttl=600)
    run_id = new_run(store, ["a", "b"])
    store.arrive(run_id, "b", "a", 2, force=False)
    client = redis.Redis.from_url(redis_db)
    keys = list(client.scan_iter(match=f"dagflow:run:{{{run_id}}}:*"))
    assert len(keys) >= 5
    assert all(0 < client.ttl(k) <= 600 for k in keys)
