"""What a step needs for the rule path and for mapped tasks (:mod:`dagflow.dag.mapping`).

* :func:`finish_gates`: the rules of the tasks below a finished one, for the store to
  decide them in the finish (trigger rules, branches, maps).
* :func:`map_lengths`: at a map parent's end, each mapped child's number of instances or
  why it fails, committed with the parent's output.
* :class:`MapSources`: the map parent's parsed output, kept once per worker process, so
  an instance's claim does not read a 10,000-item list again for each of 10,000 instances.
* :func:`map_events`: the ``map_expand`` and ``map_done`` lines of what a finish did.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow.dag.mapping import map_length, split_instance
from dagflow.dag.plan import RunPlan
from dagflow.stores.base import Gate, Gates, MapChanges

if TYPE_CHECKING:
    from dagflow.events.log import Event
    from dagflow.execution.runtime import Runtime

#: Map parents' outputs a worker process keeps (the most recently used).
SOURCES_MAX = 8


def finish_gates(plan: RunPlan, task_id: str, unchosen: Sequence[str] = ()) -> Gates:
    """What the store needs to decide ``task_id``'s children by their trigger rules.

    Only a plan with trigger rules, branches or maps (:attr:`RunPlan.ruled`) needs it:
    the finish of any other plan takes the links and joins path, with nothing more to send
    or compute per step. For an instance (``process[3]``) it is its mapped task's: the end
    of the last instance ends that task and decides its children.
    """
    base, index = split_instance(task_id)
    # The same for every step of the task (and every instance of a mapped one): built once
    # per plan, with its JSON (a wide join's gate lists every parent).
    key = ("gates", base, index is not None)
    found: Gates | None = plan.derived.get(key)
    if found is None:
        below = plan.descendants(base)
        nodes = tuple(_gate(plan, t) for t in ([base, *below] if index is not None else below))
        found = plan.derived[key] = Gates(plan.tasks[base].children, nodes)
    return replace(found, unchosen=tuple(unchosen)) if unchosen else found


def _gate(plan: RunPlan, task_id: str) -> Gate:
    task = plan.tasks[task_id]
    source = task.map_from[0] if task.map_from else ""
    return Gate(
        task_id,
        task.trigger_rule,
        task.parents,
        task.children,
        source,
        task.max_parallel or 0,
        task.workflow_ref,
    )


def map_lengths(plan: RunPlan, task_id: str, value: Any, limit: int) -> dict[str, str]:
    """For each child mapped over ``task_id``'s output ``value``: ``"N"`` instances, or
    ``"!"`` and the one-line error that fails it (:func:`dagflow.dag.mapping.map_length`)."""
    found: dict[str, str] = {}
    for child in plan.task(task_id).children:
        source = plan.tasks[child].map_from
        if source is not None and source[0] == task_id:
            length = map_length(child, task_id, source[1], value, limit)
            found[child] = str(length) if isinstance(length, int) else f"!{length}"
    return found


class MapSources:
    """Parsed outputs of map parents, by ``(run_id, parent)``, shared by a process's threads.

    A committed output never changes, so a copy kept here is never stale; at most
    :data:`SOURCES_MAX` are kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def get(self, run_id: str, parent: str) -> tuple[bool, Any]:
        """``(True, value)`` if the output is kept, else ``(False, None)``."""
        with self._lock:
            key = (run_id, parent)
            if key not in self._values:
                return False, None
            self._values.move_to_end(key)
            return True, self._values[key]

    def put(self, run_id: str, parent: str, value: Any) -> None:
        """Keep a parent's parsed output."""
        with self._lock:
            self._values[(run_id, parent)] = value
            self._values.move_to_end((run_id, parent))
            while len(self._values) > SOURCES_MAX:
                self._values.popitem(last=False)


#: The worker process's map sources.
SOURCES = MapSources()


def claim_parents(plan: RunPlan, run_id: str, task_id: str) -> tuple[str, ...]:
    """The parents whose outputs the claim of ``task_id`` reads: all of them, but the map
    parent of an instance when this process keeps its output already."""
    parents = plan.task(task_id).parents
    source = plan.task(task_id).map_from
    if source is None or split_instance(task_id)[1] is None:
        return parents
    kept, _ = SOURCES.get(run_id, source[0])
    return tuple(p for p in parents if p != source[0]) if kept else parents


def upstream_values(
    plan: RunPlan,
    run_id: str,
    task_id: str,
    outputs: Mapping[str, str],
    load: Callable[[str], Any] = json.loads,
) -> dict[str, Any]:
    """The parents' parsed outputs for ``task_id``, the map parent's from :data:`SOURCES`
    when the claim did not read it (and kept there when it did).

    ``load`` parses one stored output: :meth:`dagflow.execution.outputs.Outputs.load`
    resolves references, so a map parent's list kept here is the resolved one, read from
    the output store once per process, not once per instance.
    """
    values = {p: load(v) for p, v in outputs.items()}
    source = plan.task(task_id).map_from
    if source is None or split_instance(task_id)[1] is None:
        return values
    parent = source[0]
    if parent in values:
        SOURCES.put(run_id, parent, values[parent])
    else:
        kept, value = SOURCES.get(run_id, parent)
        if kept:
            values[parent] = value
    return values


def map_events(rt: Runtime, run_id: str, plan: RunPlan, changes: MapChanges) -> Iterator[Event]:
    """The ``map_expand`` line of each mapped task a finish expanded and the ``map_done``
    line of each it ended (``status`` ok or failed, with the error of a failed one).

    Built only when iterated: a store that writes events appended them in the finish
    (:meth:`~dagflow.execution.runtime.Runtime.emit_with_commit`).
    """
    for task_id, count in changes.expanded.items():
        yield rt.event(
            "map_expand",
            run_id,
            plan,
            task_id=task_id,
            workflow_ref=plan.tasks[task_id].workflow_ref,
            instances=count,
        )
    for task_id, status in changes.ended.items():
        yield rt.event(
            "map_done",
            run_id,
            plan,
            task_id=task_id,
            workflow_ref=plan.tasks[task_id].workflow_ref,
            status="success" if status == "ok" else "failed",
            error=changes.errors.get(task_id),
        )
