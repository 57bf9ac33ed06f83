"""Trigger rules and branches in the run store contract: both stores decide the same.

Each test builds a small plan, ends tasks through ``finish`` with the plan's gates (as a
step does) and checks what the one atomic call decided: ready, skipped (with its reason) or
still waiting.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

import pytest

from dagflow.dag.plan import RunPlan
from dagflow.dag.rules import READ_ALL_MAX, TRIGGER_RULES, decide, skip_reason
from dagflow.execution.fanout import finish_gates
from dagflow.keys import run_key
from dagflow.stores import FinishResult, RedisRunStore, RunStore
from dagflow.stores.base import FinishRequest

pytestmark = pytest.mark.integration


def make_plan(
    parents: dict[str, tuple[str, ...]],
    rules: dict[str, str] | None = None,
    branches: Sequence[str] = (),
) -> RunPlan:
    children = {t: tuple(c for c, ps in parents.items() if t in ps) for t in parents}
    tasks = {t: ("noop", {}, 0, None) for t in parents}
    return RunPlan.build("d", "t", tasks, parents, children, rules=rules or {}, branches=branches)


def start(store: RunStore, plan: RunPlan) -> str:
    run_id = uuid.uuid4().hex
    store.create_run(run_id, plan.to_json(), {"dag_name": "d", "tenant_id": "t"}, list(plan.tasks))
    return run_id


def end(
    store: RunStore,
    plan: RunPlan,
    run_id: str,
    task: str,
    state: str,
    unchosen: Sequence[str] = (),
) -> FinishResult:
    """Claim ``task`` and end it ``ok`` or ``failed``, with the plan's gates."""
    claim = store.claim(run_id, task, f"m-{task}-{uuid.uuid4().hex[:6]}", "w", 60)
    assert claim.state == "run", claim
    return store.finish(
        FinishRequest(
            run_id,
            task,
            claim.fence,
            state,  # type: ignore[arg-type]
            "1" if state == "ok" else None,
            total=len(plan.tasks),
            gates=finish_gates(plan, task, unchosen),
        )
    )


def states(store: RunStore, run_id: str) -> dict[str, str]:
    snap = store.snapshot(run_id, with_states=True)
    assert snap is not None
    return dict(snap.states or {})


# x1 -> p1, x2 -> p2, (p1, p2) -> c: a parent is skipped when its own parent fails.
JOIN = {"x1": (), "x2": (), "p1": ("x1",), "p2": ("x2",), "c": ("p1", "p2")}

# (rule, parents' ends in order, what c is after each end: wait / ready / skip)
CASES = [
    ("all_success", [("p1", "ok"), ("p2", "ok")], ["wait", "ready"]),
    ("all_success", [("p1", "ok"), ("p2", "failed")], ["wait", "skip"]),
    ("all_success", [("p1", "skipped")], ["skip"]),
    ("all_success", [("p2", "failed")], ["skip"]),
    ("all_done", [("p1", "failed"), ("p2", "skipped")], ["wait", "ready"]),
    ("all_done", [("p2", "skipped"), ("p1", "ok")], ["wait", "ready"]),
    ("one_success", [("p2", "ok")], ["ready"]),
    ("one_success", [("p1", "failed"), ("p2", "skipped")], ["wait", "skip"]),
    ("one_success", [("p1", "skipped"), ("p2", "ok")], ["wait", "ready"]),
    ("one_failed", [("p1", "ok"), ("p2", "failed")], ["wait", "ready"]),
    ("one_failed", [("p2", "failed")], ["ready"]),
    ("one_failed", [("p1", "ok"), ("p2", "skipped")], ["wait", "skip"]),
    ("none_failed", [("p1", "skipped"), ("p2", "ok")], ["wait", "ready"]),
    ("none_failed", [("p2", "ok"), ("p1", "failed")], ["wait", "skip"]),
    ("none_failed", [("p1", "failed")], ["skip"]),
]


def end_parent(store: RunStore, plan: RunPlan, run_id: str, parent: str, how: str) -> FinishResult:
    """End ``parent`` ok or failed itself, or have it skipped by failing its own parent."""
    upstream = "x" + parent[1:]
    if how == "skipped":
        return end(store, plan, run_id, upstream, "failed")
    end(store, plan, run_id, upstream, "ok")
    return end(store, plan, run_id, parent, how)


@pytest.mark.parametrize(("rule", "ends", "after"), CASES)
def test_each_rule_decides_from_its_parents_ends_in_any_order(
    store: RunStore, rule: str, ends: list[tuple[str, str]], after: list[str]
) -> None:
    # Given c with rule `rule` under two parents
    plan = make_plan(JOIN, {"c": rule})
    run_id = start(store, plan)
    for (parent, how), expected in zip(ends, after, strict=True):
        # When a parent ends
        result = end_parent(store, plan, run_id, parent, how)
        # Then c is decided by the call that recorded that end, and only then
        state = states(store, run_id)["c"]
        if expected == "ready":
            assert result.ready == ("c",) and state == "pending"
            assert store.unsent(run_id, ["c"]) == ["c"]  # in the outbox
        elif expected == "skip":
            assert "c" in result.newly_skipped and state == "skipped"
            assert result.skip_reasons["c"].startswith("skipped: ")
        else:
            assert "c" not in result.ready and state == "pending"
            assert store.unsent(run_id, ["c"]) == []


#: A join wider than READ_ALL_MAX: c is decided from its set of ended parents.
WIDE = READ_ALL_MAX + 3
WIDE_JOIN = {
    **{f"x{i}": () for i in range(WIDE)},
    **{f"p{i}": (f"x{i}",) for i in range(WIDE)},
    "c": tuple(f"p{i}" for i in range(WIDE)),
}


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
@pytest.mark.parametrize("seed", range(4))
def test_a_wide_join_is_decided_as_its_parents_states_say_at_each_end(
    store: RunStore, rule: str, seed: int
) -> None:
    # Given c with rule `rule` under more than READ_ALL_MAX parents, which end in a random
    # order and way (mostly ok, so that the rule is not decided at the first end)
    rng = random.Random(f"{rule}-{seed}")
    plan = make_plan(WIDE_JOIN, {"c": rule})
    run_id = start(store, plan)
    order = rng.sample(range(WIDE), WIDE)
    ways = rng.choices(["ok", "failed", "skipped"], weights=[8, 1, 1], k=WIDE)
    if seed == 0:
        ways = ["ok"] * WIDE  # every parent succeeds
    parents = WIDE_JOIN["c"]
    ended: dict[str, str] = {}
    decided = "wait"
    for i, how in zip(order, ways, strict=True):
        # When a parent ends
        result = end_parent(store, plan, run_id, f"p{i}", how)
        ended[f"p{i}"] = how
        # Then c is decided by the call whose end lets the rule decide it (as the pure
        # table says from every parent's state), and only by that call
        now = [ended.get(p, "pending") for p in parents]
        verdict = decide(rule, now) if decided == "wait" else "done"
        if verdict == "ready":
            assert result.ready == ("c",)
            decided = "ready"
        elif verdict == "skip":
            assert result.skip_reasons.get("c") == skip_reason(rule, parents, now)
            decided = "skip"
        else:
            assert "c" not in result.ready and "c" not in result.newly_skipped
    assert decided != "wait"  # every parent ended: c is never left waiting
    assert states(store, run_id)["c"] == ("skipped" if decided == "skip" else "pending")


def test_a_retried_wide_join_counts_the_reused_parents_as_ended(store: RunStore) -> None:
    # Given a retry of a run in which all but one parent of a wide all_done join ended ok
    # (they are reused: ok from the start, and arrived at c)
    plan = make_plan(WIDE_JOIN, {"c": "all_done"})
    run_id = uuid.uuid4().hex
    reused = {t: "1" for t in WIDE_JOIN if t not in ("x0", "p0", "c")}
    store.create_run(
        run_id,
        plan.to_json(),
        {"dag_name": "d", "tenant_id": "t"},
        list(plan.tasks),
        reused=reused,
        arrivals={"c": [p for p in WIDE_JOIN["c"] if p in reused]},
    )
    # When the last parent ends
    result = end_parent(store, plan, run_id, "p0", "failed")
    # Then c is ready
    assert result.ready == ("c",)


def test_a_join_of_more_parents_than_lua_can_unpack_is_decided(store: RunStore) -> None:
    # Given a retry of a run with an all_done join of 9,000 parents, all but one reused
    # (Lua's unpack takes about 8,000 values at most: the states are read in batches)
    width = 9_000
    parents = {"x": (), **{f"p{i}": () for i in range(width)}, "c": ()}
    parents["c"] = tuple(p for p in parents if p.startswith("p"))
    parents["p0"] = ("x",)
    plan = make_plan(parents, {"c": "all_done"})
    run_id = uuid.uuid4().hex
    reused = {p: "1" for p in parents["c"][1:]}
    meta = {"dag_name": "d", "tenant_id": "t"}
    store.create_run(
        run_id, plan.to_json(), meta, list(plan.tasks), reused=reused, arrivals={"c": [*reused]}
    )
    end(store, plan, run_id, "x", "ok")
    # When the last parent ends
    result = end(store, plan, run_id, "p0", "failed")
    # Then c is ready
    assert result.ready == ("c",)


def test_a_wide_join_of_a_run_stored_before_its_parents_were_is_decided(scratch_redis: str) -> None:
    store = RedisRunStore(scratch_redis, ttl=600)
    # Given a run stored by an older dagflow: no wide tasks' parents, no ended parents
    # counted for c
    plan = make_plan(WIDE_JOIN, {"c": "all_done"})
    run_id = start(store, plan)
    store.client.delete(run_key(run_id, "parents"))
    for i in range(WIDE - 1):
        end_parent(store, plan, run_id, f"p{i}", "ok")
    store.client.delete(run_key(run_id, "arr:c"))
    # When the last parent ends
    result = end_parent(store, plan, run_id, f"p{WIDE - 1}", "ok")
    # Then c is decided from every parent's state, named in the stored plan
    assert result.ready == ("c",)


def test_skip_reasons_name_the_parent_or_the_rule(store: RunStore) -> None:
    plan = make_plan(JOIN, {"c": "one_failed"})
    run_id = start(store, plan)
    end_parent(store, plan, run_id, "p1", "ok")
    result = end_parent(store, plan, run_id, "p2", "ok")
    assert result.skip_reasons == {"c": "skipped: trigger rule one_failed can no longer be met"}

    plan = make_plan(JOIN)
    run_id = start(store, plan)
    result = end_parent(store, plan, run_id, "p2", "failed")
    assert result.skip_reasons == {"c": "skipped: upstream task 'p2' failed"}
    run_id = start(store, plan)
    result = end_parent(store, plan, run_id, "p1", "skipped")
    assert result.skip_reasons == {
        "p1": "skipped: upstream task 'x1' failed",
        "c": "skipped: upstream task 'p1' was skipped",
    }


def test_a_duplicate_finish_changes_nothing(store: RunStore) -> None:
    # Given a cleanup that became ready when its last parent failed
    plan = make_plan({"a": (), "b": (), "c": ("a", "b")}, {"c": "all_done"})
    run_id = start(store, plan)
    end(store, plan, run_id, "a", "ok")
    b = store.claim(run_id, "b", "m-b", "w", 60)
    request = FinishRequest(run_id, "b", b.fence, "failed", total=3, gates=finish_gates(plan, "b"))
    first = store.finish(request)
    assert first.ready == ("c",) and first.recorded
    # When the same end is committed again (a redelivered step)
    again = store.finish(request)
    # Then nothing is decided twice
    assert not again.recorded and again.ready == () and again.newly_skipped == ()
    assert again.counts == first.counts
    assert not again.complete


def test_a_ready_child_is_not_made_ready_again_by_a_later_parent(store: RunStore) -> None:
    plan = make_plan({"a": (), "b": (), "c": ("a", "b")}, {"c": "one_success"})
    run_id = start(store, plan)
    assert end(store, plan, run_id, "a", "ok").ready == ("c",)
    assert end(store, plan, run_id, "b", "ok").ready == ()  # c is still in the outbox
    store.claim(run_id, "c", "m-c", "w", 60)
    plan2 = make_plan({"a": (), "b": (), "c": ("a", "b")}, {"c": "one_success"})
    run2 = start(store, plan2)
    end(store, plan2, run2, "a", "ok")
    store.claim(run2, "c", "m-c", "w", 60)  # c running
    assert end(store, plan2, run2, "b", "failed").ready == ()
    assert states(store, run2)["c"] == "running"


def test_a_skip_propagates_down_a_chain_and_stops_at_all_done(store: RunStore) -> None:
    # Given a -> b -> c -> d (all_done) -> e
    shape = {"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "e": ("d",)}
    plan = make_plan(shape, {"d": "all_done"})
    run_id = start(store, plan)
    # When a fails
    result = end(store, plan, run_id, "a", "failed")
    # Then b and c are skipped in the same call, d is ready and e waits for d
    assert result.newly_skipped == ("b", "c")
    assert result.ready == ("d",)
    assert states(store, run_id) == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "d": "pending",
        "e": "pending",
    }
    assert not result.complete
    # And d's success makes e ready; the run completes with e
    assert end(store, plan, run_id, "d", "ok").ready == ("e",)
    last = end(store, plan, run_id, "e", "ok")
    assert last.complete and last.counts == {"ok": 2, "failed": 1, "skipped": 2, "cancelled": 0}


def test_a_skip_cascade_that_ends_the_run_completes_it_once(store: RunStore) -> None:
    plan = make_plan({"a": (), "b": ("a",), "c": ("b",)}, {"b": "none_failed"})
    run_id = start(store, plan)
    result = end(store, plan, run_id, "a", "failed")
    assert result.newly_skipped == ("b", "c") and result.complete


# check (branch) -> rebuild -> publish; check -> reuse; (publish, reuse) -> cleanup
BRANCH = {
    "check": (),
    "rebuild": ("check",),
    "publish": ("rebuild",),
    "reuse": ("check",),
    "cleanup": ("publish", "reuse"),
}


@pytest.mark.parametrize("rule", ["all_done", "none_failed"])
def test_a_branch_skips_the_children_it_did_not_choose_and_their_descendants(
    store: RunStore, rule: str
) -> None:
    plan = make_plan(BRANCH, {"cleanup": rule}, ["check"])
    run_id = start(store, plan)
    # When check chooses reuse
    result = end(store, plan, run_id, "check", "ok", unchosen=["rebuild"])
    # Then rebuild and publish are skipped in the same call, and reuse is ready
    assert result.ready == ("reuse",)
    assert result.skip_reasons == {
        "rebuild": "skipped: not chosen by branch 'check'",
        "publish": "skipped: upstream task 'rebuild' was skipped",
    }
    # And the join after both branches runs once reuse is done
    done = end(store, plan, run_id, "reuse", "ok")
    assert done.ready == ("cleanup",)
    assert end(store, plan, run_id, "cleanup", "ok").complete


def test_an_all_success_join_after_a_branch_is_skipped(store: RunStore) -> None:
    plan = make_plan(BRANCH, {}, ["check"])
    run_id = start(store, plan)
    result = end(store, plan, run_id, "check", "ok", unchosen=["reuse"])
    assert result.ready == ("rebuild",)
    assert result.skip_reasons == {
        "reuse": "skipped: not chosen by branch 'check'",
        "cleanup": "skipped: upstream task 'reuse' was skipped",
    }


def test_a_cancelled_run_decides_nothing(store: RunStore) -> None:
    plan = make_plan({"a": (), "b": ("a",)}, {"b": "all_done"})
    run_id = start(store, plan)
    claim = store.claim(run_id, "a", "m-a", "w", 60)
    store.cancel(run_id)
    result = store.finish(
        FinishRequest(run_id, "a", claim.fence, "failed", total=2, gates=finish_gates(plan, "a"))
    )
    assert result.cancelled and result.ready == () and result.newly_skipped == ()
