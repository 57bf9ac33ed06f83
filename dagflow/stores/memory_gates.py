"""The rule path of the in-memory store's finish: trigger rules, branches and maps.

The twin of the Redis FINISH script's gates block (:mod:`dagflow.stores.redis_scripts`),
line for line, run under the store's lock: decide the finished task's children by their
trigger rules, expand a mapped child whose rule is met into its instances, and end a mapped
task when its last instance ends. Both twins are held to one contract suite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dagflow.dag.mapping import instance_id, results_json, split_instance
from dagflow.dag.rules import READ_ALL_MAX, decide, decisive, skip_reason, unchosen_reason
from dagflow.stores.base import AttemptEnd, Gates, MapChanges
from dagflow.stores.memory_views import MemoryRun


@dataclass
class MapState:
    """One mapped task of a run: what its parent's end recorded and how far it got.

    Attributes:
        length: The instances it gets, or None until it is known.
        error: Why it fails (its parent's list was unusable), or None.
        left: Instances not ended yet.
        next: The next instance to start under ``max_parallel`` (-1: all started).
        failed: Instances that failed.
    """

    length: int | None = None
    error: str | None = None
    left: int = 0
    next: int = -1
    failed: int = 0


@dataclass
class RunMaps:
    """The mapped tasks of one run (kept on :class:`MemoryRun`)."""

    tasks: dict[str, MapState] = field(default_factory=dict)

    def preset(self, run: MemoryRun, maps: Mapping[str, tuple[int, int, int]]) -> None:
        """Start mapped tasks expanded (a retry's; their instances are in ``run.states``)."""
        for task_id, (length, left, nxt) in maps.items():
            self.tasks[task_id] = MapState(length=length, left=left, next=nxt)
            run.states[task_id] = "mapped"

    def record(self, lengths: Mapping[str, str]) -> None:
        """Keep each mapped child's length (``"3"``) or error (``"!..."``) from its parent."""
        for child, raw in lengths.items():
            state = self.tasks.setdefault(child, MapState())
            if raw.startswith("!"):
                state.error = raw[1:]
            else:
                state.length = int(raw)


def maps_of(run: MemoryRun) -> RunMaps:
    """The run's :class:`RunMaps`, created on first use."""
    found = run.extra.get("maps")
    if not isinstance(found, RunMaps):
        found = run.extra["maps"] = RunMaps()
    return found


def decide_children(
    run: MemoryRun,
    task_id: str,
    final: str,
    gates: Gates,
    queued: Callable[[str], bool],
    reasons: dict[str, str],
) -> tuple[list[str], MapChanges]:
    """Decide what the end of ``task_id`` makes of the tasks below it (lock held).

    Args:
        run: The run.
        task_id: The task (or instance) whose end was just recorded, as ``final``.
        gates: The rules of every task below it.
        queued: Whether a task is in the outbox already (made ready, not yet claimed).
        reasons: Filled with the tasks this call skipped and why.

    Returns:
        The tasks made ready (the caller puts them in the outbox) and what happened to
        mapped tasks.
    """
    nodes = {g.task_id: g for g in gates.nodes}
    maps = maps_of(run)
    queue: list[str] = []
    ready: list[str] = []
    decided: set[str] = set()
    hot: set[str] = set()
    expanded: dict[str, int] = {}
    closed: dict[str, str] = {}
    errors: dict[str, str] = {}

    def is_open(node: str) -> bool:
        return run.states.get(node) == "pending" and not queued(node)

    def ended(parent: str, state: str, children: tuple[str, ...]) -> None:
        # A child with more than READ_ALL_MAX parents counts the end in its set of ended
        # parents; it reads all its parents' states only when this end is decisive or
        # every parent has ended.
        for child in children:
            gate = nodes[child]
            if len(gate.parents) > READ_ALL_MAX:
                run.arrivals.setdefault(child, set()).add(parent)
                if decisive(gate.rule, state):
                    hot.add(child)
            queue.append(child)

    def skip(node: str, why: str) -> None:
        run.states[node] = "skipped"
        run.counts["skipped"] += 1
        reasons[node] = why
        decided.add(node)
        ended(node, "skipped", nodes[node].children)

    def close(node: str, state: str, output: str | None, error: str | None) -> None:
        run.states[node] = state
        run.counts[state] += 1
        if output is not None:
            run.outputs[node] = output
        if error is not None:
            run.ends[node] = AttemptEnd(error=error)
            errors[node] = error
        closed[node] = state
        decided.add(node)
        ended(node, state, nodes[node].children)

    def expand(node: str, parent: str, most: int) -> None:
        state = maps.tasks.get(node)
        if state is None or (state.length is None and state.error is None):
            skip(node, f"skipped: map parent '{parent}' did not succeed")
            return
        if state.error is not None:
            close(node, "failed", None, state.error)
            return
        n = state.length or 0
        expanded[node] = n
        if n == 0:
            close(node, "ok", results_json([]), None)
            return
        decided.add(node)
        run.states[node] = "mapped"
        state.left = n
        start = n
        if 0 < most < n:
            start, state.next = most, most
        for i in range(n):
            run.states[instance_id(node, i)] = "pending"
        ready.extend(instance_id(node, i) for i in range(start))

    base, index = split_instance(task_id)
    if index is not None:
        state = maps.tasks[base]
        n = state.length or 0
        state.left -= 1
        if final == "failed":
            state.failed += 1
        while 0 <= state.next < n and run.states.get(instance_id(base, state.next)) != "pending":
            state.next += 1  # a retry's reused instances are ``ok`` already
        if 0 <= state.next < n:
            ready.append(instance_id(base, state.next))
            state.next += 1
        if state.left <= 0:
            outs = [run.outputs.get(instance_id(base, i)) for i in range(n)]
            if state.failed == 0:
                close(base, "ok", results_json(outs), None)
            else:
                why = f"RunnerError: Task '{base}': {state.failed} of {n} instances failed"
                close(base, "failed", results_json(outs), why)
    for child in gates.unchosen:
        if is_open(child):
            skip(child, unchosen_reason(task_id))
    if index is None:
        ended(task_id, final, gates.children)
    while queue:
        node = queue.pop(0)
        if node in decided or not is_open(node):
            continue
        gate = nodes[node]
        wide = len(gate.parents) > READ_ALL_MAX
        if wide and node not in hot and len(run.arrivals.get(node, ())) < len(gate.parents):
            continue  # no parent's end decides it yet: its verdict is still wait
        states = [run.states.get(p, "pending") for p in gate.parents]
        verdict = decide(gate.rule, states)
        if verdict == "ready" and gate.map_from:
            expand(node, gate.map_from, gate.max_parallel)
        elif verdict == "ready":
            decided.add(node)
            ready.append(node)
        elif verdict == "skip":
            skip(node, skip_reason(gate.rule, gate.parents, states))
    return ready, MapChanges(expanded, closed, errors)
