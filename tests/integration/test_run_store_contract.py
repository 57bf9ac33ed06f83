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
    assert store.claim(run_id, "a", "msg-1").state == "run"
    assert store.claim(run_id, "a", "msg-2").state == "duplicate"  # a second copy
    assert store.claim(run_id, "a", "msg-1").state == "run"  # redelivery or retry of the same one
    store.finish(run_id, "a", "ok", '{"x": 1}', (), total=1)
    assert store.claim(run_id, "a", "msg-1").state == "ok"


def test_claim_hands_over_the_parents_outputs(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b", "c"])
    store.finish(run_id, "a", "ok", '{"x": 1}', (), total=3)
    store.finish(run_id, "b", "ok", "[2]", (), total=3)
    claim = store.claim(run_id, "c", "msg", ["a", "b"])
    assert (claim.state, dict(claim.outputs)) == ("run", {"a": '{"x": 1}', "b": "[2]"})
    assert store.claim(run_id, "c", "other", ["a", "b"]).outputs == {}


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


def test_join_arrivals_are_a_set_not_a_counter(store: RunStore) -> None:
    run_id = new_run(store, ["p1", "p2", "child"])
    joins = [("child", 2)]
    assert store.finish(run_id, "p1", "ok", "1", (), 3, joins).ready == ()
    assert store.finish(run_id, "p1", "ok", "1", (), 3, joins).ready == ()  # repeated arrival
    assert store.finish(run_id, "p2", "ok", "2", (), 3, joins).ready == ("child",)
    assert store.finish(run_id, "p2", "ok", "2", (), 3, joins).ready == ()  # already sent
    redelivered = store.finish(run_id, "p2", "ok", None, (), 3, joins, force=True)
    assert redelivered.ready == ("child",)  # a redelivered parent re-sends
    assert store.outputs(run_id, ["p2"]) == {"p2": "2"}  # and does not lose its output


def test_a_failed_parent_never_arrives(store: RunStore) -> None:
    run_id = new_run(store, ["p1", "p2", "child"])
    joins = [("child", 2)]
    store.finish(run_id, "p1", "ok", "1", (), 3, joins)
    failed = store.finish(run_id, "p2", "failed", None, ["child"], 3, joins)
    assert failed.ready == () and failed.newly_skipped == ("child",) and failed.complete


def test_finish_reports_several_ready_joins_and_skips_together(store: RunStore) -> None:
    tasks = ["a", "b", *(f"j{i}" for i in range(30))]
    run_id = new_run(store, tasks)
    joins = [(f"j{i}", 2) for i in range(30)]
    store.finish(run_id, "a", "ok", "1", (), len(tasks), joins)
    result = store.finish(run_id, "b", "ok", "2", (), len(tasks), joins)
    assert result.ready == tuple(f"j{i}" for i in range(30))


def test_many_skips_in_one_call(store: RunStore) -> None:
    tasks = ["root", *(f"d{i}" for i in range(10_000))]
    run_id = new_run(store, tasks)
    result = store.finish(run_id, "root", "failed", None, tasks[1:], len(tasks))
    assert len(result.newly_skipped) == 10_000 and result.complete


def test_concurrent_arrivals_make_the_child_ready_exactly_once(store: RunStore) -> None:
    parents = [f"p{i}" for i in range(50)]
    run_id = new_run(store, [*parents, "child"])
    ready: list[str] = []
    barrier = threading.Barrier(len(parents))

    def arrive(parent: str) -> None:
        barrier.wait()
        result = store.finish(run_id, parent, "ok", "1", (), 51, [("child", len(parents))])
        if result.ready:
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
    store.finish(run_id, "a", "ok", "1", (), 3, [("b", 2)])
    client = redis.Redis.from_url(redis_db)
    keys = list(client.scan_iter(match=f"dagflow:run:{{{run_id}}}:*"))
    assert len(keys) >= 5
    assert all(0 < client.ttl(k) <= 600 for k in keys)
