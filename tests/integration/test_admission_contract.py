"""Admission, one contract on two stores: slots, waiting runs in order, tenants in turn."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from dagflow.dag.plan import RunPlan
from dagflow.execution.admission import Slot
from dagflow.execution.lifecycle import finish_run
from dagflow.settings import Settings
from dagflow.stores import FinishResult, MemoryRunStore, RedisRunStore, RunStore
from dagflow.wiring import build_runtime

pytestmark = pytest.mark.integration


#: Tests share one Redis database: each gives its scopes and tenants names of its own.
TAG = ""


@pytest.fixture(autouse=True)
def own_names() -> None:
    global TAG
    TAG = uuid.uuid4().hex[:8]


@pytest.fixture
def scope() -> str:
    return f"dag:d-{uuid.uuid4().hex[:8]}"


def waiting(store: RunStore) -> dict[str, int]:
    """This test's waiting runs per tenant."""
    return {t[len(TAG) + 1 :]: n for t, n in store.waiting_runs().items() if t.startswith(TAG)}


def submit(store: RunStore, name: str, slots: list[Slot]) -> tuple[str, bool]:
    """Store a pending run of tenant ``name`` and ask for its slots: (run id, admitted)."""
    tenant = f"{TAG}-{name}"
    run_id = uuid.uuid4().hex
    meta = {"dag_name": "d", "tenant_id": tenant, "started_at": time.time(), "pending": True}
    store.create_run(run_id, json.dumps({}), meta, ["a"], pending=True)
    return run_id, store.admit(run_id, tenant, slots)


def members(store: RunStore, scope: str) -> list[str]:
    """Runs holding a slot of ``scope``."""
    if isinstance(store, RedisRunStore):
        return list(store.client.zrange(Slot(scope, 1).key, 0, -1))
    return list(store._slots.get(Slot(scope, 1).key, {}))  # type: ignore[attr-defined]


def end(store: RunStore, run_id: str, slots: list[Slot], status: str = "success") -> None:
    store.mark_done(run_id, status, {"finished_at": time.time()})
    store.release_slots(run_id, slots)


def test_runs_over_the_limit_wait_as_pending(store: RunStore, scope: str) -> None:
    slots = [Slot(scope, 2)]
    results = [submit(store, "t", slots) for _ in range(3)]
    assert [ok for _, ok in results] == [True, True, False]
    snap = store.snapshot(results[2][0])
    assert snap is not None and snap.status == "pending"
    assert waiting(store) == {"t": 1}


def test_a_freed_slot_goes_to_the_oldest_waiting_run(store: RunStore, scope: str) -> None:
    slots = [Slot(scope, 1)]
    holder, _ = submit(store, "t", slots)
    first, _ = submit(store, "t", slots)
    second, _ = submit(store, "t", slots)
    assert store.promote(10) == []  # no room yet
    end(store, holder, slots)
    assert store.promote(10) == [first]
    # Activation starts it once: a second call (another process) does nothing
    assert store.activate(first, "d\tt", time.time(), ["a"], 60)
    assert not store.activate(first, "d\tt", time.time(), ["a"], 60)
    snap = store.snapshot(first)
    assert snap is not None and snap.status == "running"
    assert waiting(store) == {"t": 1}
    end(store, first, slots)
    assert store.promote(10) == [second]


def test_a_new_run_never_overtakes_a_run_waiting_for_its_scope(store: RunStore, scope: str) -> None:
    slots = [Slot(scope, 1)]
    holder, _ = submit(store, "t", slots)
    waiting, _ = submit(store, "t", slots)
    end(store, holder, slots)  # the slot is free, but a run waits for it
    _late, admitted = submit(store, "t", slots)
    assert not admitted
    assert store.promote(1) == [waiting]


def test_tenants_take_freed_slots_in_turn(store: RunStore, scope: str) -> None:
    # Given one slot, held, and tenant A with three runs waiting before tenant B's one
    slots = [Slot(scope, 1)]
    holder, _ = submit(store, "t0", slots)
    a1, a2, a3 = (submit(store, "A", slots)[0] for _ in range(3))
    b1, _ = submit(store, "B", slots)
    # When the slot frees up four times
    order = []
    previous = holder
    for _ in range(4):
        end(store, previous, slots)
        (previous,) = store.promote(10)
        order.append(previous)
    # Then B's run goes second, not behind all of A's
    assert order == [a1, b1, a2, a3]


def test_scopes_limit_together(store: RunStore, scope: str) -> None:
    # A run under a DAG limit and a tenant limit needs room in both
    tenant = Slot(f"tenant:t-{uuid.uuid4().hex[:8]}", 1)
    dag = Slot(scope, 5)
    first, ok1 = submit(store, "t", [dag, tenant])
    second, ok2 = submit(store, "t", [dag, tenant])
    assert (ok1, ok2) == (True, False)
    end(store, first, [dag, tenant])
    assert store.promote(10) == [second]


def test_a_cancelled_waiting_run_is_dropped_not_started(store: RunStore, scope: str) -> None:
    slots = [Slot(scope, 1)]
    holder, _ = submit(store, "t", slots)
    cancelled, _ = submit(store, "t", slots)
    after, _ = submit(store, "t", slots)
    store.mark_done(cancelled, "cancelled", {})
    end(store, holder, slots)
    assert store.promote(10) == [after]
    assert waiting(store) == {}


def test_the_audit_frees_slots_of_ended_runs_and_finds_unstarted_ones(
    store: RunStore, scope: str
) -> None:
    slots = [Slot(scope, 2)]
    ended, _ = submit(store, "t", slots)
    unstarted, _ = submit(store, "t", slots)
    # The process that ended one died before giving its slot back
    store.mark_done(ended, "success", {})
    freed, stuck = store.audit_slots(stale_s=0.0)
    assert freed >= 1 and ended not in members(store, scope)
    # And the run admitted but never activated (its starter died) is handed back
    assert unstarted in stuck
    assert store.activate(unstarted, "d\tt", time.time(), ["a"], 60)
    assert unstarted not in store.audit_slots(stale_s=0.0)[1]
    assert members(store, scope) == [unstarted]


def test_a_store_error_when_giving_slots_back_does_not_fail_the_runs_end(tmp_path: Path) -> None:
    # Given a run under a limit whose store cannot give slots back (Redis dropped the
    # connection right after the run's end was recorded)
    class Flaky(MemoryRunStore):
        def release_slots(self, run_id: str, slots: Sequence[Slot]) -> None:
            raise redis.ConnectionError("Connection reset by peer")

    settings = Settings.from_env({"ORCH_EVENTS_PATH": str(tmp_path / "events.jsonl")})
    rt = build_runtime(settings, store=Flaky())
    slots = [Slot(f"dag:d-{uuid.uuid4().hex[:8]}", 1)]
    run_id = uuid.uuid4().hex
    meta = {"dag_name": "d", "tenant_id": "t", "pending": True, "slots": [[slots[0].scope, 1]]}
    rt.store.create_run(run_id, "{}", meta, ["a"], pending=True)
    assert rt.store.admit(run_id, "t", slots)
    plan = RunPlan.build("d", "t", {"a": ("w", {}, 0, None)}, {"a": ()}, {"a": ()})
    # When the run ends
    finish_run(rt, run_id, plan, FinishResult(complete=True, counts={"ok": 1}))
    # Then it is ended all the same, and its slot is left for the sweeper's audit
    snap = rt.store.snapshot(run_id)
    assert snap is not None and snap.status == "success"
    assert rt.store.audit_slots(stale_s=60)[0] == 1
