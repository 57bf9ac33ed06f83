"""One contract, two stores: the Redis store and its in-memory twin behave the same."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from dagflow.keys import EVENTS_STREAM, RUNS_STARTED
from dagflow.stores import FinishResult, RedisRunStore, RunStore
from dagflow.stores.base import AttemptEnd, FinishRequest, Push

pytestmark = pytest.mark.integration


def new_run(
    store: RunStore,
    tasks: list[str],
    roots: tuple[str, ...] = (),
    *,
    dag: str = "d",
    tenant: str = "t",
    started_at: float | None = None,
) -> str:
    run_id = uuid.uuid4().hex
    store.create_run(
        run_id,
        json.dumps({"plan": True}),
        {"dag_name": dag, "tenant_id": tenant, "started_at": started_at or time.time()},
        tasks,
        roots=roots,
        grace_s=600,
    )
    return run_id


def due(store: RunStore, run_id: str) -> list[tuple[str, str]]:
    """This run's due outbox entries from one sweep (the indexes are shared by all runs)."""
    return [d for d in store.sweep(1000, 60, 600).due if d[0] == run_id]


def run_to_end(
    store: RunStore, run_id: str, task: str, state: str = "ok", output: str | None = "1", **kw: Any
) -> FinishResult:
    """Claim ``task`` and finish it under its lease."""
    claim = store.claim(run_id, task, f"msg-{task}-{uuid.uuid4().hex[:6]}", "w1", 60)
    assert claim.state == "run", claim
    return store.finish(FinishRequest(run_id, task, claim.fence, state, output, **kw))  # type: ignore[arg-type]


def test_plan_meta_and_pending_states(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b"])
    assert store.load_plan(run_id) == '{"plan": true}'
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None
    assert snap.status == "running" and snap.meta["dag_name"] == "d"
    assert dict(snap.states or {}) == {"a": "pending", "b": "pending"}
    assert snap.counts == {"ok": 0, "failed": 0, "skipped": 0, "cancelled": 0, "total": 2}
    assert store.load_plan("nope") is None and store.snapshot("nope") is None
    assert store.claim("nope", "a", "msg").state == "gone"


def test_a_live_lease_keeps_every_other_delivery_out(store: RunStore) -> None:
    # Given a step claimed by one delivery
    run_id = new_run(store, ["a"])
    first = store.claim(run_id, "a", "msg-1", "w1", 60)
    assert (first.state, first.fence, first.attempt) == ("run", 1, 1)
    # Then neither another message nor a redelivery of the same id may run it concurrently
    assert store.claim(run_id, "a", "msg-2", "w2", 60).state == "busy"
    again = store.claim(run_id, "a", "msg-1", "w1", 60)
    assert (again.state, again.holder) == ("busy", "w1")
    store.finish(FinishRequest(run_id, "a", first.fence, "ok", '{"x": 1}', total=1))
    assert store.claim(run_id, "a", "msg-1").state == "ok"


def test_an_expired_lease_is_taken_over_and_the_late_holder_is_refused(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b"])
    old = store.claim(run_id, "a", "msg-1", "w1", 0.2)
    time.sleep(0.35)
    new = store.claim(run_id, "a", "msg-1", "w2", 60)  # same id: a restored message
    assert (new.state, new.fence, new.took_over) == ("run", old.fence + 1, "w1")
    assert store.renew([(run_id, "a", old.fence)], 60) == [False]
    late = store.finish(FinishRequest(run_id, "a", old.fence, "ok", '"late"', total=2, links=["b"]))
    assert late.lost and late.ready == ()
    done = store.finish(FinishRequest(run_id, "a", new.fence, "ok", '"new"', total=2, links=["b"]))
    assert not done.lost and done.ready == ("b",)
    assert store.outputs(run_id, ["a"]) == {"a": '"new"'}


def test_renewing_keeps_a_lease_alive(store: RunStore) -> None:
    run_id = new_run(store, ["a"])
    claim = store.claim(run_id, "a", "msg-1", "w1", 0.3)
    for _ in range(3):
        time.sleep(0.15)
        assert store.renew([(run_id, "a", claim.fence)], 0.3) == [True]
    assert store.claim(run_id, "a", "msg-2", "w2", 60).state == "busy"


def test_a_retry_releases_the_lease_counts_the_attempt_and_is_durable(store: RunStore) -> None:
    run_id = new_run(store, ["a"])
    first = store.claim(run_id, "a", "msg-1", "w1", 60)
    assert store.retry(run_id, "a", first.fence, 0.0, 0.2) is True
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None and dict(snap.states or {}) == {"a": "retry"}
    assert due(store, run_id) == []  # not due yet
    time.sleep(0.3)
    assert due(store, run_id) == [(run_id, "a")]  # the sweeper sends it
    assert due(store, run_id) == []  # re-armed: not sent again at once
    second = store.claim(run_id, "a", "msg-2", "w2", 60)
    assert (second.state, second.attempt, second.fence) == ("run", 2, first.fence + 1)
    assert store.retry(run_id, "a", first.fence, 0, 0) is False  # a stale holder


def test_expired_leases_are_swept_once(store: RunStore) -> None:
    run_id = new_run(store, ["a"])
    claim = store.claim(run_id, "a", "msg-1", "w1", 0.1)
    time.sleep(0.25)
    found = store.sweep(1000, 60, 600)
    assert [e for e in found.expired if e[0] == run_id] == [(run_id, "a", "w1", claim.fence)]
    assert [d for d in found.due if d[0] == run_id] == [(run_id, "a")]
    assert [e for e in store.sweep(1000, 60, 600).expired if e[0] == run_id] == []


def test_the_outbox_holds_ready_children_until_they_are_claimed(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b", "c"], roots=("a",))
    assert store.unsent(run_id, ["a"]) == ["a"]  # the start canvas may be lost
    result = run_to_end(store, run_id, "a", links=["b", "c"], total=3, grace_s=0)
    assert result.ready == ("b", "c") and store.unsent(run_id, ["a", "b", "c"]) == ["b", "c"]
    store.claim(run_id, "b", "msg-b", "w1", 60)
    assert store.unsent(run_id, ["b", "c"]) == ["c"]
    time.sleep(0.01)  # grace 0 is due 1 ms after the finish (the stores round up to 1 ms)
    assert due(store, run_id) == [(run_id, "c")]  # never picked up: sent again


def test_claim_hands_over_the_parents_outputs(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b", "c"])
    run_to_end(store, run_id, "a", output='{"x": 1}', total=3)
    run_to_end(store, run_id, "b", output="[2]", total=3)
    claim = store.claim(run_id, "c", "msg", "w", 60, ["a", "b"])
    assert (claim.state, dict(claim.outputs)) == ("run", {"a": '{"x": 1}', "b": "[2]"})


def test_finish_counts_once_and_completes_once(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b", "c"])
    a = store.claim(run_id, "a", "m", "w", 60)
    first = store.finish(FinishRequest(run_id, "a", a.fence, "ok", "1", total=3))
    again = store.finish(
        FinishRequest(run_id, "a", a.fence, "ok", "1", total=3)
    )  # a repeated commit
    assert not first.complete and again.counts == {
        "ok": 1,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
    }
    assert first.recorded and not again.recorded
    b = store.claim(run_id, "b", "m", "w", 60)
    failed = store.finish(FinishRequest(run_id, "b", b.fence, "failed", None, skip=["c"], total=3))
    assert failed.complete and failed.newly_skipped == ("c",)
    assert failed.counts == {"ok": 1, "failed": 1, "skipped": 1, "cancelled": 0}
    repeat = store.finish(FinishRequest(run_id, "b", b.fence, "failed", None, skip=["c"], total=3))
    assert not repeat.complete and repeat.newly_skipped == ()
    assert store.outputs(run_id, ["a", "b"]) == {"a": "1"}


def test_join_arrivals_are_a_set_not_a_counter(store: RunStore) -> None:
    run_id = new_run(store, ["p1", "p2", "child"])
    joins = [("child", 2)]
    p1 = store.claim(run_id, "p1", "m", "w", 60)
    assert (
        store.finish(FinishRequest(run_id, "p1", p1.fence, "ok", "1", total=3, joins=joins)).ready
        == ()
    )
    again = store.finish(FinishRequest(run_id, "p1", p1.fence, "ok", "1", total=3, joins=joins))
    assert again.ready == ()  # a repeated arrival
    p2 = store.claim(run_id, "p2", "m", "w", 60)
    assert store.finish(
        FinishRequest(run_id, "p2", p2.fence, "ok", "2", total=3, joins=joins)
    ).ready == ("child",)
    assert (
        store.finish(FinishRequest(run_id, "p2", p2.fence, "ok", "2", total=3, joins=joins)).ready
        == ()
    )
    assert store.outputs(run_id, ["p2"]) == {"p2": "2"}


def test_a_failed_parent_never_arrives(store: RunStore) -> None:
    run_id = new_run(store, ["p1", "p2", "child"])
    joins = [("child", 2)]
    run_to_end(store, run_id, "p1", total=3, joins=joins)
    failed = run_to_end(store, run_id, "p2", "failed", None, skip=["child"], total=3, joins=joins)
    assert failed.ready == () and failed.newly_skipped == ("child",) and failed.complete


def test_a_step_failed_from_outside(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b"])
    claim = store.claim(run_id, "a", "msg-1", "w1", 60)
    other = store.finish(
        FinishRequest(run_id, "a", 0, "failed", None, skip=["b"], total=2, token="msg-9")
    )
    assert other.lost  # another delivery holds it
    mine = store.finish(
        FinishRequest(run_id, "a", 0, "failed", None, skip=["b"], total=2, token="msg-1")
    )
    assert mine.recorded and mine.complete and mine.newly_skipped == ("b",)
    assert (
        store.finish(FinishRequest(run_id, "a", claim.fence, "ok", "1", total=2)).recorded is False
    )


def test_finish_reports_several_ready_joins_and_skips_together(store: RunStore) -> None:
    tasks = ["a", "b", *(f"j{i}" for i in range(30))]
    run_id = new_run(store, tasks)
    joins = [(f"j{i}", 2) for i in range(30)]
    run_to_end(store, run_id, "a", total=len(tasks), joins=joins)
    result = run_to_end(store, run_id, "b", total=len(tasks), joins=joins)
    assert result.ready == tuple(f"j{i}" for i in range(30))


def test_many_skips_in_one_call(store: RunStore) -> None:
    tasks = ["root", *(f"d{i}" for i in range(10_000))]
    run_id = new_run(store, tasks)
    result = run_to_end(store, run_id, "root", "failed", None, skip=tasks[1:], total=len(tasks))
    assert len(result.newly_skipped) == 10_000 and result.complete


def test_concurrent_arrivals_make_the_child_ready_exactly_once(store: RunStore) -> None:
    parents = [f"p{i}" for i in range(50)]
    run_id = new_run(store, [*parents, "child"])
    fences = {p: store.claim(run_id, p, f"m-{p}", "w", 60).fence for p in parents}
    ready: list[str] = []
    barrier = threading.Barrier(len(parents))

    def arrive(parent: str) -> None:
        barrier.wait()
        joins = [("child", len(parents))]
        result = store.finish(
            FinishRequest(run_id, parent, fences[parent], "ok", "1", total=51, joins=joins)
        )
        if result.ready:
            ready.append(parent)

    threads = [threading.Thread(target=arrive, args=(p,)) for p in parents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ready) == 1


def test_idle_runs_are_reported_and_inspected(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b"])
    claim = store.claim(run_id, "a", "m", "w", 60)
    time.sleep(0.2)
    assert run_id in store.sweep(1000, 60, 0.1).idle_runs
    seen = store.inspect(run_id)
    assert (seen.exists, seen.done, seen.dag_name, seen.tenant_id) == (True, False, "d", "t")
    assert seen.live == frozenset({"a"})
    store.finish(FinishRequest(run_id, "a", claim.fence, "ok", "1", total=2))
    store.touch(run_id)
    assert run_id not in store.sweep(1000, 60, 0.1).idle_runs
    store.mark_done(run_id, "success", {})
    time.sleep(0.2)
    assert run_id not in store.sweep(1000, 60, 0.1).idle_runs


def test_the_sweep_lock_has_one_holder(store: RunStore) -> None:
    name = f"test-{uuid.uuid4().hex}"
    assert store.try_lock(name, "a", 0.2) is True
    assert store.try_lock(name, "b", 0.2) is False
    time.sleep(0.3)
    assert store.try_lock(name, "b", 0.2) is True


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
    run_to_end(store, run_id, "a", total=3, joins=[("b", 2)])
    client = redis.Redis.from_url(redis_db)
    keys = list(client.scan_iter(match=f"dagflow:run:{{{run_id}}}:*"))
    assert len(keys) >= 5
    assert all(0 < client.ttl(k) <= 600 for k in keys)


def test_the_claim_appends_task_start_only_when_it_grants_the_lease(scratch_redis: str) -> None:
    store = RedisRunStore(scratch_redis, ttl=600, events_maxlen=1000)
    client = redis.Redis.from_url(scratch_redis, decode_responses=True)
    run_id = new_run(store, ["a"])
    start: dict[str, Any] = {"timestamp": "t0", "event": "task_start", "run_id": run_id}
    start.update(task_id="a", attempt=1, worker='w\u00e9 "1"', fence=0, workflow_ref="wf")
    first = store.claim(run_id, "a", "msg-1", "w1", 1.0, event=start)
    assert store.claim(run_id, "a", "msg-2", "w2", 60, event=start).state == "busy"
    time.sleep(1.1)
    second = store.claim(run_id, "a", "msg-1", "w2", 60, event=start)  # takes over
    lines = [f["data"] for _, f in client.xrange(EVENTS_STREAM) if f["log"] == "events"]
    records = [json.loads(line) for line in lines]
    assert [(r["attempt"], r["fence"]) for r in records] == [
        (first.attempt, first.fence),
        (second.attempt, second.fence),
    ]
    assert second.fence > first.fence
    assert list(records[0]) == list(start)  # the record's field order is kept
    assert records[0]["worker"] == start["worker"]
    assert store.finish(FinishRequest(run_id, "a", second.fence, "ok", "1", total=1)).recorded
    assert store.claim(run_id, "a", "msg-3", "w3", 60, event=start).state == "ok"
    assert client.xlen(EVENTS_STREAM) == 2  # no task_start for a finished step


def test_finish_pushes_the_messages_of_the_links_it_makes_ready_and_no_others(
    scratch_redis: str,
) -> None:
    # Given a run a -> (b, c), b already ended by a copy, and a run x -> y that is cancelled
    store = RedisRunStore(scratch_redis, ttl=600, events_maxlen=1000)
    client = redis.Redis.from_url(scratch_redis, decode_responses=True)
    run_id = new_run(store, ["a", "b", "c"])
    run_to_end(store, run_id, "b", total=3)
    push = Push("steps", {"b": "msg-b", "c": "msg-c"})
    # When a's finish comes with a message for each link
    claim = store.claim(run_id, "a", "msg-a", "w1", 60)
    result = store.finish(
        FinishRequest(run_id, "a", claim.fence, "ok", "1", total=3, links=["b", "c"], push=push)
    )
    # Then only c, made ready by it, was pushed, once, and is still in the outbox
    assert result.ready == result.pushed == ("c",)
    assert client.lrange("steps", 0, -1) == ["msg-c"]
    assert store.unsent(run_id, ["b", "c"]) == ["c"]
    # And a repeated finish, a late holder and a cancelled run push nothing
    again = store.finish(
        FinishRequest(run_id, "a", claim.fence, "ok", "1", total=3, links=["b", "c"], push=push)
    )
    late = store.finish(
        FinishRequest(run_id, "a", claim.fence - 1, "ok", "1", total=3, links=["c"], push=push)
    )
    assert again.pushed == late.pushed == ()
    other = new_run(store, ["x", "y"])
    x = store.claim(other, "x", "msg-x", "w1", 60)
    store.cancel(other)
    gone = store.finish(
        FinishRequest(
            other, "x", x.fence, "ok", "1", total=2, links=["y"], push=Push("steps", {"y": "msg-y"})
        )
    )
    assert gone.pushed == () and client.llen("steps") == 1


def test_finish_without_a_message_for_every_link_pushes_nothing(scratch_redis: str) -> None:
    store = RedisRunStore(scratch_redis, ttl=600, events_maxlen=1000)
    run_id = new_run(store, ["a", "b", "c"])
    claim = store.claim(run_id, "a", "msg-a", "w1", 60)
    push = Push("steps", {"b": "msg-b"})
    result = store.finish(
        FinishRequest(run_id, "a", claim.fence, "ok", "1", total=3, links=["b", "c"], push=push)
    )
    assert result.ready == ("b", "c") and result.pushed == ()
    assert redis.Redis.from_url(scratch_redis).llen("steps") == 0


def test_a_released_lease_is_taken_over_at_once_and_stays_fenced(store: RunStore) -> None:
    # Given a step whose pool process died (the worker's main process releases its lease)
    run_id = new_run(store, ["a"])
    dead = store.claim(run_id, "a", "msg-1", "w1", 60)
    assert store.release(run_id, "a", "msg-2") is False  # only the holder's own delivery
    assert store.release(run_id, "a", "msg-1") is True
    # Then the redelivered message takes over without waiting for the lease to expire
    again = store.claim(run_id, "a", "msg-1", "w1", 60)
    assert (again.state, again.fence, again.took_over) == ("run", dead.fence + 1, "w1")
    assert store.finish(FinishRequest(run_id, "a", dead.fence, "ok", "1", total=1)).lost


def test_task_details_count_attempts_and_keep_how_the_last_one_ended(store: RunStore) -> None:
    # Given a task that failed once (retried), then failed for good, and one never run
    run_id = new_run(store, ["a", "b", "c"])
    first = store.claim(run_id, "a", "m1", "w1", 60)
    retry_end = AttemptEnd(0.5, "ValueError: boom", 'File "x.py", line 3')
    assert store.retry(run_id, "a", first.fence, 0, 0, end=retry_end)
    tasks = {t.task_id: t for t in store.tasks(run_id) or []}
    assert (tasks["a"].state, tasks["a"].attempts, tasks["a"].last) == ("retry", 1, retry_end)
    second = store.claim(run_id, "a", "m2", "w2", 60)
    assert {t.task_id: t.attempts for t in store.tasks(run_id) or []}["a"] == 2
    final = AttemptEnd(0.25, "RunnerError: Task 'a' failed after 2 attempts: ValueError: boom")
    store.finish(
        FinishRequest(run_id, "a", second.fence, "failed", None, skip=["b"], total=3, end=final)
    )
    run_to_end(store, run_id, "c", total=3, end=AttemptEnd(duration_s=1.5))
    # When its details are read
    tasks = {t.task_id: t for t in store.tasks(run_id) or []}
    # Then each task has its state, attempts, worker and last end
    assert set(tasks) == {"a", "b", "c"}
    a, b, c = tasks["a"], tasks["b"], tasks["c"]
    assert (a.state, a.attempts, a.worker, a.fence, a.last) == ("failed", 2, "w2", 2, final)
    assert (b.state, b.attempts, b.last) == ("skipped", 0, AttemptEnd())
    assert (c.state, c.attempts, c.last.duration_s, c.last.error) == ("ok", 1, 1.5, None)
    # A repeated commit does not overwrite what the first one kept
    store.finish(
        FinishRequest(run_id, "a", second.fence, "failed", None, total=3, end=AttemptEnd(error="x"))
    )
    assert {t.task_id: t.last for t in store.tasks(run_id) or []}["a"] == final
    assert store.tasks("nope") is None


def test_list_runs_filters_and_orders_newest_first(store: RunStore) -> None:
    tag = uuid.uuid4().hex  # the Redis index is shared with other tests' runs
    base = time.time()
    old = new_run(store, ["a"], dag=f"etl-{tag}", tenant=f"acme-{tag}", started_at=base - 30)
    mid = new_run(store, ["a"], dag=f"etl-{tag}", tenant=f"other-{tag}", started_at=base - 20)
    new = new_run(store, ["a"], dag=f"report-{tag}", tenant=f"acme-{tag}", started_at=base - 10)
    store.mark_done(old, "failed", {"duration_s": 1.0})

    def ids(**kw: Any) -> list[str]:
        return [s.run_id for s in store.list_runs(limit=1000, **kw) if tag in s.meta["dag_name"]]

    assert ids() == [new, mid, old]
    assert ids(tenant_id=f"acme-{tag}") == [new, old]
    assert ids(dag_name=f"etl-{tag}") == [mid, old]
    assert ids(status="failed") == [old]
    assert ids(status="running", tenant_id=f"acme-{tag}") == [new]
    got = store.list_runs(dag_name=f"etl-{tag}", limit=1)
    assert [s.run_id for s in got] == [mid] and got[0].meta["tenant_id"] == f"other-{tag}"


def test_list_runs_pages_after_a_position_without_skipping_ties(store: RunStore) -> None:
    from dagflow.stores.base import run_position

    # Given five runs, three of them started in the same millisecond (ties, ordered by id)
    tag = uuid.uuid4().hex
    base = time.time()
    starts = [base - 40, base - 30, base - 30, base - 30, base - 10]
    made = {new_run(store, ["a"], dag=f"page-{tag}", started_at=t) for t in starts}
    # When they are listed two at a time, each page after the last run of the one before
    seen: list[str] = []
    before = None
    while True:
        page = store.list_runs(dag_name=f"page-{tag}", limit=2, before=before)
        seen += [s.run_id for s in page]
        if len(page) < 2:
            break
        before = run_position(page[-1])
    # Then every run comes once, in the order of one listing of them all
    assert len(seen) == 5 and set(seen) == made
    assert seen == [s.run_id for s in store.list_runs(dag_name=f"page-{tag}", limit=10)]


def test_listing_drops_runs_whose_state_expired(redis_db: str) -> None:
    store = RedisRunStore(redis_db, ttl=600)
    client = redis.Redis.from_url(redis_db, decode_responses=True)
    gone = new_run(store, ["a"], dag="expiring")
    kept = new_run(store, ["a"], dag="expiring")
    client.delete(f"dagflow:run:{{{gone}}}:meta")  # as if its TTL had passed
    assert [s.run_id for s in store.list_runs(dag_name="expiring", limit=10)] == [kept]
    assert client.zscore(RUNS_STARTED, gone) is None
    assert client.zscore(RUNS_STARTED, kept) is not None
    # Runs that started longer ago than the TTL are trimmed when a new run starts
    client.zadd(RUNS_STARTED, {"ancient": 1000})
    new_run(store, ["a"])
    assert client.zscore(RUNS_STARTED, "ancient") is None


def test_cancel_ends_open_tasks_and_returns_the_live_holders(store: RunStore) -> None:
    # Given a run with one step running, one waiting to retry and two pending
    run_id = new_run(store, ["a", "b", "c", "d"], roots=("a", "b"))
    held = store.claim(run_id, "a", "msg-a", "w1", 60)
    retried = store.claim(run_id, "b", "msg-b", "w1", 60)
    assert store.retry(run_id, "b", retried.fence, 600, 600)
    # When the run is cancelled
    result = store.cancel(run_id)
    # Then every task nobody runs is cancelled at once; the running one is handed back
    assert result.state == "cancelled" and not result.complete
    assert sorted(result.newly_cancelled) == ["b", "c", "d"]
    assert result.running == (("a", "msg-a"),)
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None and snap.status == "running" and snap.meta["cancelled"] is True
    assert dict(snap.states or {}) == {
        "a": "running",
        "b": "cancelled",
        "c": "cancelled",
        "d": "cancelled",
    }
    assert snap.counts["cancelled"] == 3
    # And nothing of the run is re-sent from the outbox
    found = store.sweep(1000, 60, 600)
    assert not [d for d in found.due if d[0] == run_id]
    # And the running step's end is recorded as cancelled: no output, no ready children
    end = store.finish(
        FinishRequest(run_id, "a", held.fence, "ok", '{"x":1}', total=4, links=["c"])
    )
    assert end.cancelled and end.recorded and end.complete and end.ready == ()
    assert end.counts == {"ok": 0, "failed": 0, "skipped": 0, "cancelled": 4}
    assert store.outputs(run_id, ["a"]) == {}
    # And cancelling again changes nothing
    assert store.cancel(run_id).newly_cancelled == ()


def test_a_claim_in_a_cancelled_run_ends_the_step_cancelled(store: RunStore) -> None:
    # Given a cancelled run whose only step runs under a lease that then expires
    run_id = new_run(store, ["a"])
    store.claim(run_id, "a", "msg-1", "w1", 0.05)
    assert store.cancel(run_id).running == (("a", "msg-1"),)
    time.sleep(0.2)
    # Then the sweeper does not re-send it, and reports the run instead
    found = store.sweep(1000, 60, 600)
    assert not [e for e in found.expired if e[0] == run_id]
    assert run_id in found.cancelled_runs
    # And a delivery that claims it ends it cancelled, completing the run
    claim = store.claim(run_id, "a", "msg-2", "w2", 60)
    assert (claim.state, claim.recorded, claim.complete) == ("cancelled", True, True)
    assert store.claim(run_id, "a", "msg-3", "w2", 60).state == "cancelled"


def test_cancel_force_ends_live_steps_too(store: RunStore) -> None:
    run_id = new_run(store, ["a", "b"])
    store.claim(run_id, "a", "msg-1", "w1", 60)
    result = store.cancel(run_id, force=True)
    assert sorted(result.newly_cancelled) == ["a", "b"] and result.running == ()
    assert result.complete and result.counts["cancelled"] == 2


def test_cancelling_a_finished_or_unknown_run_changes_nothing(store: RunStore) -> None:
    run_id = new_run(store, ["a"])
    run_to_end(store, run_id, "a", total=1)
    store.mark_done(run_id, "success", {"finished_at": time.time()})
    result = store.cancel(run_id)
    assert (result.state, result.status) == ("finished", "success")
    snap = store.snapshot(run_id)
    assert snap is not None and snap.status == "success" and "cancelled" not in snap.meta
    assert store.cancel("nope").state == "gone"


def test_a_run_created_with_reused_tasks_starts_from_them(store: RunStore) -> None:
    # Given a retry: a and b reused (ok with their outputs), c joins a, b and x
    run_id = uuid.uuid4().hex
    store.create_run(
        run_id,
        "{}",
        {"dag_name": "d", "tenant_id": "t", "started_at": time.time()},
        ["a", "b", "x", "c"],
        roots=("x",),
        reused={"a": '{"n":1}', "b": '{"n":2}'},
        arrivals={"c": ["a", "b"]},
    )
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None and snap.counts["ok"] == 2
    assert dict(snap.states or {}) == {"a": "ok", "b": "ok", "x": "pending", "c": "pending"}
    assert store.outputs(run_id, ["a", "b"]) == {"a": '{"n":1}', "b": '{"n":2}'}
    assert store.claim(run_id, "a", "msg").state == "ok"
    # When x succeeds, the join is complete: c is ready
    done = run_to_end(store, run_id, "x", total=4, joins=[("c", 3)])
    assert done.ready == ("c",)
