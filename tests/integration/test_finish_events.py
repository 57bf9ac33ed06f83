"""The lines a finish decides, written by the Redis store inside the finish itself.

With a store that writes events (``events_maxlen``), the ``task_skip``, ``map_expand`` and
``map_done`` lines of what a finish decided are appended to the stream by the same atomic
script that commits the end, right after its ``task_ok``/``task_fail``: a worker that dies
after the commit can no longer lose them. These tests call the store's finish directly, with
no event written from Python, and read the stream: exactly one line per decision, each the
very line the Python path writes for a store that does not write events (the in-memory twin
here, through :func:`dagflow.execution.outcome.implied_events`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
import redis

from dagflow.clock import isoformat, utc_now
from dagflow.dag.plan import RunPlan
from dagflow.events.log import Event
from dagflow.execution.backoff import RetryPolicy
from dagflow.execution.fanout import finish_gates, map_lengths
from dagflow.execution.outcome import implied_events
from dagflow.execution.runtime import Runtime
from dagflow.keys import EVENTS_STREAM
from dagflow.settings import Settings
from dagflow.stores import MemoryRunStore, RedisRunStore, RunStore
from dagflow.stores.base import FinishRequest, FinishResult
from dagflow.stores.event_stream import encode

pytestmark = pytest.mark.integration

#: The lines a finish decides (the others, task_ok and task_fail, were atomic already).
DECIDED = ("task_skip", "map_expand", "map_done")


class ListSink:
    """An event sink that keeps the records it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, event: Event) -> bool:
        self.records.append(event.to_record())
        return True

    def read(self, stats: object = None) -> list[dict[str, Any]]:
        return list(self.records)


def runtime(store: RunStore) -> tuple[Runtime, ListSink]:
    sink = ListSink()
    return Runtime(Settings.from_env({}), store, sink, RetryPolicy()), sink


@pytest.fixture
def events_store(scratch_redis: str) -> RedisRunStore:
    """The Redis run store as a worker in stream mode has it: it writes events."""
    return RedisRunStore(scratch_redis, ttl=600, events_maxlen=10_000)


def stream_lines(store: RedisRunStore, run_id: str) -> list[str]:
    """The raw JSON lines of the run in the event stream, in stream order."""
    client: redis.Redis = store.client
    entries: Any = client.xrange(EVENTS_STREAM)
    return [f["data"] for _, f in entries if json.loads(f["data"])["run_id"] == run_id]


def plan_of(
    parents: dict[str, tuple[str, ...]],
    rules: dict[str, str] | None = None,
    branches: Sequence[str] = (),
    maps: dict[str, tuple[str, str, int | None]] | None = None,
) -> RunPlan:
    """Each task runs workflow ``wf.<task>``, so a line's workflow_ref is told from its id."""
    children = {t: tuple(c for c, ps in parents.items() if t in ps) for t in parents}
    tasks = {t: (f"wf.{t}", {}, 0, None) for t in parents}
    return RunPlan.build(
        "d√ag", "ten/ant", tasks, parents, children,
        rules=rules or {}, branches=branches, maps=maps or {},
    )  # fmt: skip


@dataclass(frozen=True)
class End:
    """One step's end in a scenario: ``state``, and an ``ok`` one's output value."""

    task: str
    state: str = "ok"
    output: Any = None
    unchosen: tuple[str, ...] = ()


def finish(store: RunStore, plan: RunPlan, run_id: str, end: End) -> tuple[Event, FinishResult]:
    """Claim and end a step as :mod:`dagflow.execution.outcome` does, with its event."""
    claim = store.claim(run_id, end.task, f"m-{uuid.uuid4().hex[:6]}", "w", 60)
    assert claim.state == "run", (end, claim)
    name = "task_ok" if end.state == "ok" else "task_fail"
    event = Event(
        timestamp=isoformat(utc_now()),
        event=name,
        run_id=run_id,
        dag_name=plan.dag_name,
        tenant_id=plan.tenant_id,
        task_id=end.task,
        workflow_ref=plan.task(end.task).workflow_ref,
        attempt=claim.attempt,
        error=None if end.state == "ok" else 'Boom: "x/y"\n\tline',
    )
    value = end.output if end.output is not None else {"task": end.task}
    request = FinishRequest(
        run_id,
        end.task,
        claim.fence,
        "ok" if end.state == "ok" else "failed",
        json.dumps(value) if end.state == "ok" else None,
        total=len(plan.tasks),
        event=event.to_record(),
    )
    if plan.ruled:
        lengths = map_lengths(plan, end.task, value, 10_000) if end.state == "ok" else {}
        gates = finish_gates(plan, end.task, end.unchosen)
        request = replace(request, gates=gates, maps=lengths)
    elif end.state == "failed":
        skip = plan.descendants(end.task)
        refs = {t: plan.task(t).workflow_ref for t in skip}
        request = replace(request, skip=skip, skip_refs=refs)
    else:
        request = replace(request, links=plan.task(end.task).children)
    return event, store.finish(request)


def start(store: RunStore, plan: RunPlan) -> str:
    run_id = uuid.uuid4().hex
    meta = {"dag_name": plan.dag_name, "tenant_id": plan.tenant_id}
    store.create_run(run_id, plan.to_json(), meta, list(plan.tasks))
    return run_id


def by_redis(store: RedisRunStore, plan: RunPlan, ends: Sequence[End]) -> list[str]:
    """Run the ends on the Redis store; the stream's lines (nothing written by Python)."""
    run_id = start(store, plan)
    for end in ends:
        finish(store, plan, run_id, end)
    return stream_lines(store, run_id)


def by_python(plan: RunPlan, ends: Sequence[End]) -> list[dict[str, Any]]:
    """Run the ends on the in-memory twin and write their lines as a step does."""
    store = MemoryRunStore()
    rt, sink = runtime(store)
    run_id = start(store, plan)
    for end in ends:
        event, result = finish(store, plan, run_id, end)
        assert result.recorded and not result.lost
        rt.emit_with_commit(event, implied_events(rt, run_id, plan, end.task, result))
    return sink.records


MAP = {"process": ("list", "files", None)}
MAPPED = {"list": (), "process": ("list",), "merge": ("process",)}
SCENARIOS: dict[str, tuple[RunPlan, list[End]]] = {
    "plain failure skips every descendant": (
        plan_of({"a": (), "b": ("a",), "c": ("b",), "d": ()}),
        [End("d"), End("a", "failed")],
    ),
    "rules: a failure skips one child and readies another": (
        plan_of(
            {"a": (), "clean": ("a",), "next": ("a",), "after": ("next",)},
            rules={"clean": "all_done"},
        ),
        [End("a", "failed"), End("clean")],
    ),
    "a branch skips what it did not choose, and below it": (
        plan_of(
            {"check": (), "left": ("check",), "right": ("check",), "below": ("right",)},
            branches=["check"],
        ),
        [End("check", unchosen=("right",)), End("left")],
    ),
    "a map expands and ends": (
        plan_of(MAPPED, maps=MAP),
        [End("list", output={"files": ["x", "y"]}), End("process[0]"), End("process[1]")],
    ),
    "a failed instance fails the map and skips its child": (
        plan_of(MAPPED, maps=MAP),
        [
            End("list", output={"files": ["x", "y", "z"]}),
            End("process[0]"),
            End("process[1]", "failed"),
            End("process[2]"),
        ],
    ),
    "an unusable list fails the map at once": (
        plan_of(MAPPED, maps=MAP),
        [End("list", output={"files": "not a list"})],
    ),
    "an empty list expands to nothing and ends": (
        plan_of(MAPPED, maps=MAP),
        [End("list", output={"files": []}), End("merge")],
    ),
}


def _bare(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("timestamp", "run_id")}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_store_writes_the_lines_python_writes_for_another_store(
    events_store: RedisRunStore, name: str
) -> None:
    # Given a scenario of step ends, run on the Redis store that writes events (no Python
    # emit at all) and on the in-memory twin with the Python path writing the lines
    plan, ends = SCENARIOS[name]
    lines = by_redis(events_store, plan, ends)
    python = by_python(plan, ends)
    records = [json.loads(line) for line in lines]
    # Then the same lines in the same order, field for field but the time and the run id
    assert [_bare(r) for r in records] == [_bare(r) for r in python]
    assert any(r["event"] in DECIDED for r in records)
    # And each line is, byte for byte, what the Event model writes for its record
    for line, record in zip(lines, records, strict=True):
        assert line == encode(Event.model_validate(record).to_record())
    # And a decided line carries the timestamp of the commit's own event
    stamp = ""
    for record in records:
        if record["event"] in DECIDED:
            assert record["timestamp"] == stamp
        else:
            stamp = record["timestamp"]


def test_a_map_writes_one_expand_and_one_done_in_its_finishes(
    events_store: RedisRunStore,
) -> None:
    # Given a map over two items
    plan = plan_of(MAPPED, maps=MAP)
    run_id = start(events_store, plan)
    common = {"run_id": run_id, "dag_name": "d√ag", "tenant_id": "ten/ant"}
    # When the parent's finish commits, nothing written from Python
    finish(events_store, plan, run_id, End("list", output={"files": ["x", "y"]}))
    # Then the stream holds its task_ok and the map_expand, in that order
    decided = [json.loads(x) for x in stream_lines(events_store, run_id)]
    assert [(r["event"], r.get("task_id")) for r in decided] == [
        ("task_ok", "list"),
        ("map_expand", "process"),
    ]
    expand = {k: v for k, v in decided[1].items() if k != "timestamp"}
    assert expand == {
        "event": "map_expand", **common,
        "task_id": "process", "workflow_ref": "wf.process", "instances": 2,
    }  # fmt: skip
    # When the instances end, the last one failed
    finish(events_store, plan, run_id, End("process[0]"))
    _, last = finish(events_store, plan, run_id, End("process[1]", "failed"))
    # Then one map_done failed with its error, and one task_skip of merge, after its task_fail
    records = [json.loads(x) for x in stream_lines(events_store, run_id)]
    tail = [{k: v for k, v in r.items() if k != "timestamp"} for r in records[-3:]]
    assert tail[0]["event"] == "task_fail" and tail[0]["task_id"] == "process[1]"
    assert tail[1:] == [
        {
            "event": "task_skip", **common, "task_id": "merge", "workflow_ref": "wf.merge",
            "error": "skipped: upstream task 'process' failed",
        },
        {
            "event": "map_done", **common, "task_id": "process", "workflow_ref": "wf.process",
            "error": "RunnerError: Task 'process': 1 of 2 instances failed", "status": "failed",
        },
    ]  # fmt: skip
    assert last.complete
    counts = [r["event"] for r in records]
    assert (counts.count("map_expand"), counts.count("map_done"), counts.count("task_skip")) == (
        1,
        1,
        1,
    )


def test_a_duplicate_finish_writes_no_line_again(events_store: RedisRunStore) -> None:
    # Given a plain DAG whose root failed, its task_skip lines written
    plan = plan_of({"a": (), "b": ("a",), "c": ("b",)})
    run_id = start(events_store, plan)
    claim = events_store.claim(run_id, "a", "m-a", "w", 60)
    request = FinishRequest(
        run_id, "a", claim.fence, "failed", total=3, skip=("b", "c"),
        skip_refs={"b": "wf.b", "c": "wf.c"},
        event={"timestamp": "T", "event": "task_fail", "run_id": run_id, "dag_name": "d",
               "tenant_id": "t", "task_id": "a"},
    )  # fmt: skip
    assert events_store.finish(request).newly_skipped == ("b", "c")
    before = stream_lines(events_store, run_id)
    assert [json.loads(x)["event"] for x in before] == ["task_fail", "task_skip", "task_skip"]
    # When the same finish is delivered again
    again = events_store.finish(request)
    # Then it records nothing and writes nothing
    assert not again.recorded and stream_lines(events_store, run_id) == before


def test_a_store_that_writes_no_events_writes_no_decided_line(scratch_redis: str) -> None:
    # Given the Redis store without an events cap (the JSONL-only mode)
    store = RedisRunStore(scratch_redis, ttl=600)
    plan = plan_of(MAPPED, maps=MAP)
    # When a map fails at its parent's end (an unusable list) and skips its child
    lines = by_redis(store, plan, [End("list", output={"files": "nope"})])
    # Then the stream holds nothing of it: the Python path writes those lines
    assert lines == []
    rt, sink = runtime(store)
    run_id = start(store, plan)
    event, result = finish(store, plan, run_id, End("list", output={"files": "nope"}))
    rt.emit_with_commit(event, implied_events(rt, run_id, plan, "list", result))
    assert [r["event"] for r in sink.records] == ["task_ok", "task_skip", "map_done"]
