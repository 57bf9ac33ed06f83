"""Pools, one contract on two stores: slots, parked steps in order, tenants in turn, recovery.

Each test runs against the Redis scripts (on the scratch database) and the in-memory twin,
through the ``store`` fixture and :func:`dagflow.wiring.pool_store`.
"""

from __future__ import annotations

import time
import uuid

import pytest

from dagflow.stores import RunStore
from dagflow.stores.base import FinishRequest
from dagflow.stores.pools import PoolStore
from dagflow.wiring import pool_store

pytestmark = pytest.mark.integration

POOL = "warehouse"


def pools_of(store: RunStore) -> PoolStore:
    found = pool_store(store)
    assert found is not None
    return found


def new_run(store: RunStore, tasks: list[str], tenant: str = "t") -> str:
    """A running run whose ``tasks`` are all ready (pending, in the outbox)."""
    run_id = uuid.uuid4().hex
    meta = {"dag_name": "d", "tenant_id": tenant, "started_at": time.time()}
    store.create_run(run_id, "{}", meta, tasks, roots=tasks)
    return run_id


def end(store: RunStore, run_id: str, task: str, n_tasks: int = 1) -> None:
    """Claim and finish ``task`` ok (as a step does before it releases its slot)."""
    claim = store.claim(run_id, task, uuid.uuid4().hex, "w", 30.0)
    assert claim.state == "run"
    store.finish(FinishRequest(run_id, task, claim.fence, "ok", "{}", total=n_tasks))


def test_steps_over_the_size_are_parked(store: RunStore) -> None:
    pools = pools_of(store)
    run = new_run(store, ["a", "b", "c"])
    states = [pools.acquire(POOL, 2, run, t, "t").state for t in ("a", "b", "c")]
    assert states == ["granted", "granted", "parked"]
    use = pools.usage()[POOL]
    assert (use.size, use.in_use, use.waiting) == (2, 2, 1)
    assert pools.parked(POOL, run, ["a", "b", "c"]) == ["c"]
    assert use.describe(POOL) == "waiting for pool 'warehouse' (2/2 in use, 1 waiting)"


def test_acquire_and_park_are_idempotent(store: RunStore) -> None:
    # Given a holder and a parked step (a pool of 1)
    pools = pools_of(store)
    run = new_run(store, ["a", "b"])
    assert pools.acquire(POOL, 1, run, "a", "t").state == "granted"
    assert pools.acquire(POOL, 1, run, "b", "t").state == "parked"
    # When each is delivered again
    again = [pools.acquire(POOL, 1, run, t, "t").state for t in ("a", "b")]
    # Then the holder keeps its one slot and the parked step waits once
    assert again == ["granted", "parked"]
    use = pools.usage()[POOL]
    assert (use.in_use, use.waiting) == (1, 1)


def test_a_release_wakes_the_oldest_parked_step_which_then_holds_the_slot(
    store: RunStore,
) -> None:
    pools = pools_of(store)
    run = new_run(store, ["h", "a", "b"])
    assert pools.acquire(POOL, 1, run, "h", "t").state == "granted"
    for task in ("a", "b"):
        assert pools.acquire(POOL, 1, run, task, "t").state == "parked"
    end(store, run, "h", 3)
    # When the holder gives its slot back, the oldest parked step gets it
    assert pools.release(POOL, run, "h") == ((run, "a"),)
    assert pools.usage()[POOL].in_use == 1
    # A newcomer does not overtake b
    other = new_run(store, ["x"])
    assert pools.acquire(POOL, 1, other, "x", "t").state == "parked"
    # and a arrives holding its slot already
    assert pools.acquire(POOL, 1, run, "a", "t").state == "granted"
    assert pools.usage()[POOL].in_use == 1
    end(store, run, "a", 3)
    assert pools.release(POOL, run, "a") == ((run, "b"),)


def test_tenants_are_served_in_turn_and_each_tenants_steps_in_order(store: RunStore) -> None:
    # Given a pool of 1 held, then A parks three steps and B one, after them
    pools = pools_of(store)
    holder = new_run(store, ["h"])
    a = new_run(store, ["a1", "a2", "a3"], tenant="A")
    b = new_run(store, ["b1"], tenant="B")
    assert pools.acquire(POOL, 1, holder, "h", "X").state == "granted"
    for task in ("a1", "a2", "a3"):
        assert pools.acquire(POOL, 1, a, task, "A").state == "parked"
    assert pools.acquire(POOL, 1, b, "b1", "B").state == "parked"
    # When each slot holder ends and releases in turn
    order = []
    current, task, n = holder, "h", 1
    for _ in range(4):
        end(store, current, task, n)
        woken = pools.release(POOL, current, task)
        assert len(woken) == 1
        current, task = woken[0]
        n = 3 if current == a else 1
        assert pools.acquire(POOL, 1, current, task, "?").state == "granted"
        order.append(task)
    # Then B's step went second, not behind all of A's
    assert order == ["a1", "b1", "a2", "a3"]


def test_a_release_is_a_no_op_while_another_delivery_runs_the_step(store: RunStore) -> None:
    # Given a step that holds its slot and runs (say, after taking over a lost lease)
    pools = pools_of(store)
    run = new_run(store, ["a", "b"])
    assert pools.acquire(POOL, 1, run, "a", "t").state == "granted"
    assert store.claim(run, "a", "tok", "w", 30.0).state == "run"
    assert pools.acquire(POOL, 1, run, "b", "t").state == "parked"
    # When a late holder whose end was refused releases
    assert pools.release(POOL, run, "a") == ()
    # Then the slot is still the running step's
    assert pools.usage()[POOL].in_use == 1


def test_a_retry_releases_its_slot(store: RunStore) -> None:
    pools = pools_of(store)
    run = new_run(store, ["a", "b"])
    assert pools.acquire(POOL, 1, run, "a", "t").state == "granted"
    assert pools.acquire(POOL, 1, run, "b", "t").state == "parked"
    claim = store.claim(run, "a", "tok", "w", 30.0)
    assert store.retry(run, "a", claim.fence, 60.0, 30.0)
    assert pools.release(POOL, run, "a") == ((run, "b"),)
    # The retry of a, when it comes, waits for a slot again
    assert pools.acquire(POOL, 1, run, "a", "t").state == "parked"


def test_no_slot_is_taken_for_an_ended_step_or_a_cancelled_or_gone_run(store: RunStore) -> None:
    pools = pools_of(store)
    run = new_run(store, ["a", "b"])
    end(store, run, "a", 2)
    assert pools.acquire(POOL, 1, run, "a", "t").state == "pass"
    assert pools.acquire(POOL, 1, "no-such-run", "a", "t").state == "pass"
    store.cancel(run)
    assert pools.acquire(POOL, 1, run, "b", "t").state == "pass"
    assert pools.usage()[POOL].in_use == 0


def test_mapped_instances_take_a_slot_each(store: RunStore) -> None:
    pools = pools_of(store)
    instances = [f"process[{i}]" for i in range(3)]
    run = new_run(store, instances)
    states = [pools.acquire(POOL, 2, run, t, "t").state for t in instances]
    assert states == ["granted", "granted", "parked"]
    assert pools.parked(POOL, run, instances) == ["process[2]"]


def test_the_sweep_frees_slots_of_ended_and_dead_holders_and_wakes_parked_steps(
    store: RunStore,
) -> None:
    # Given a pool of 3 held by a step that ended without releasing, a step whose lease
    # expired (its worker died) and a step that took a slot and never claimed it
    pools = pools_of(store)
    run = new_run(store, ["ended", "dead", "lost", "w1", "w2", "w3", "live"])
    for task in ("ended", "dead", "lost"):
        assert pools.acquire(POOL, 3, run, task, "t").state == "granted"
    for task in ("w1", "w2", "w3"):
        assert pools.acquire(POOL, 3, run, task, "t").state == "parked"
    end(store, run, "ended", 7)
    assert store.claim(run, "dead", "tok", "w", 0.05).state == "run"
    time.sleep(0.15)
    # When the sweep runs (stale after 0.1 s)
    found = pools.sweep(0.1)
    # Then all three slots go to the parked steps, in order
    assert found.freed == 3
    assert found.woken == ((run, "w1"), (run, "w2"), (run, "w3"))
    assert pools.usage()[POOL].waiting == 0


def test_the_sweep_keeps_a_running_holder_and_resends_a_woken_step_that_never_came(
    store: RunStore,
) -> None:
    pools = pools_of(store)
    run = new_run(store, ["a", "b", "c"])
    assert pools.acquire(POOL, 2, run, "a", "t").state == "granted"
    assert store.claim(run, "a", "tok", "w", 30.0).state == "run"
    assert pools.acquire(POOL, 2, run, "b", "t").state == "granted"
    assert pools.acquire(POOL, 2, run, "c", "t").state == "parked"
    end(store, run, "b", 3)
    assert pools.release(POOL, run, "b") == ((run, "c"),)
    # When c's message is lost and a stale period passes
    time.sleep(0.15)
    found = pools.sweep(0.1)
    # Then a (running, live lease) keeps its slot and c is sent again, still holding its own
    assert (found.freed, found.woken, found.resent) == (0, (), ((run, "c"),))
    assert pools.usage()[POOL].in_use == 2
    # and not again before another stale period
    assert pools.sweep(10.0).resent == ()


def test_parked_steps_of_a_cancelled_run_are_dropped_and_its_idle_slots_freed(
    store: RunStore,
) -> None:
    # Given a pool of 1 held by run X's step (not yet claimed), and X and Y parked behind
    pools = pools_of(store)
    x = new_run(store, ["x1", "x2"])
    y = new_run(store, ["y1"])
    assert pools.acquire(POOL, 1, x, "x1", "t").state == "granted"
    assert pools.acquire(POOL, 1, x, "x2", "t").state == "parked"
    assert pools.acquire(POOL, 1, y, "y1", "t").state == "parked"
    # When X is cancelled and the sweep runs
    store.cancel(x)
    found = pools.sweep(30.0)
    # Then X's slot goes to Y's step, and X's parked step is dropped
    assert (found.freed, found.woken) == (1, ((y, "y1"),))
    assert pools.usage()[POOL].waiting == 0
