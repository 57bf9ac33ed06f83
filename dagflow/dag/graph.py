"""Graph checks and analysis of a DAG: references, cycles, order and critical path.

Pure functions over a :class:`~dagflow.dag.spec.DagSpec`; they read no file and touch no server.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dagflow.dag.mapping import ITEM_PARAM, parse_map_ref
from dagflow.dag.spec import NAMESPACE_SEP, DagSpec, TaskSpec
from dagflow.errors import (
    CycleDetectedError,
    DagValidationError,
    SpecError,
    UnknownWorkflowError,
)


@dataclass(frozen=True)
class Graph:
    """Adjacency of a validated DAG.

    Attributes:
        order: Task ids in a topological order (file order breaks ties).
        parents: For each task, its direct dependencies (``depends_on``, deduplicated).
        children: For each task, the tasks that depend on it directly, in file order.
    """

    order: tuple[str, ...]
    parents: dict[str, tuple[str, ...]]
    children: dict[str, tuple[str, ...]]

    @property
    def roots(self) -> tuple[str, ...]:
        """Tasks with no dependencies, which start the run."""
        return tuple(t for t in self.order if not self.parents[t])

    def descendants(self, task_id: str) -> set[str]:
        """Every task downstream of ``task_id`` (not including it)."""
        return reachable(self.children, task_id)

    def critical_path(self) -> list[str]:
        """The longest chain of dependent tasks, counted in tasks (durations are unknown)."""
        depth: dict[str, int] = {}
        best_parent: dict[str, str | None] = {}
        for node in self.order:
            parent = max(self.parents[node], key=lambda p: depth[p], default=None)
            depth[node] = depth[parent] + 1 if parent is not None else 1
            best_parent[node] = parent
        if not depth:
            return []
        last: str | None = max(self.order, key=lambda t: depth[t])
        path: list[str] = []
        while last is not None:
            path.append(last)
            last = best_parent[last]
        return path[::-1]


def reachable(children: Mapping[str, Sequence[str]], start: str) -> set[str]:
    """Every node reachable from ``start`` along ``children`` edges (not ``start`` itself)."""
    seen: set[str] = set()
    stack = list(children[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(children[node])
    return seen


def _find_cycle(nodes: Iterable[str], parents: dict[str, tuple[str, ...]]) -> list[str]:
    """Return one cycle as a path ``[a, b, ..., a]`` following ``depends_on`` edges."""
    colour: dict[str, int] = {}
    for start in nodes:
        if colour.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                colour[node] = 1
                path.append(node)
            deps = parents[node]
            if index < len(deps):
                stack.append((node, index + 1))
                nxt = deps[index]
                if colour.get(nxt) == 1:
                    cycle = [*path[path.index(nxt) :], nxt]
                    # depends_on points from a task to what runs first: show run order.
                    return cycle[::-1]
                if not colour.get(nxt):
                    stack.append((nxt, 0))
            else:
                colour[node] = 2
                path.pop()
    return []


def _map_problems(task: TaskSpec, parents: Sequence[str], source: str) -> list[SpecError]:
    """What is wrong with a task's ``map`` and ``max_parallel`` (empty if nothing)."""

    def problem(message: str, field: str) -> SpecError:
        return DagValidationError(message, file=source, task=task.id, field=field)

    if task.map is None:
        if task.max_parallel is not None:
            why = "max_parallel applies to a mapped task only (add map:)"
            return [problem(why, "max_parallel")]
        return []
    found: list[SpecError] = []
    if parse_map_ref(task.map, parents) is None:
        listed = ", ".join(parents) or "none"
        found.append(
            problem(
                f"map '{task.map}' must be PARENT.KEY with PARENT one of its direct parents "
                f"(depends_on: {listed})",
                "map",
            )
        )
    if ITEM_PARAM in task.params:
        found.append(
            problem(
                f"a mapped task receives its item as the param '{ITEM_PARAM}': "
                "it cannot declare one",
                f"params.{ITEM_PARAM}",
            )
        )
    if task.branch:
        found.append(problem("a mapped task cannot be a branch task", "branch"))
    return found


def build_graph(
    spec: DagSpec, *, source: str = "<dag>", workflows: Iterable[str] | None = None
) -> Graph:
    """Check the DAG's references and shape and return its :class:`Graph`.

    Args:
        spec: The field-checked DAG.
        source: The file name used in error messages.
        workflows: Registered workflow names; when given, every ``workflow_ref`` must be one.

    Every problem is reported, not only the first: the raised error's ``errors`` holds
    them all, in file order, the cycle (checked when the ids are unique) last.

    Raises:
        DagValidationError: No tasks, a duplicate id, an unknown or self dependency, a
            param whose key would collide with an upstream output's namespaced key, or a
            branch task with no children; or
            several problems of any kind (all in ``errors``).
        CycleDetectedError: ``depends_on`` edges form a cycle (the path is in the message).
        UnknownWorkflowError: A ``workflow_ref`` is not registered.
    """
    if not spec.tasks:
        raise DagValidationError("a DAG needs at least one task", file=source, field="tasks")
    problems: list[SpecError] = []
    index: dict[str, int] = {}
    for position, task in enumerate(spec.tasks):
        if task.id in index:
            problems.append(
                DagValidationError(
                    f"duplicate task id (also task #{index[task.id] + 1})",
                    file=source,
                    task=task.id,
                    field="id",
                )
            )
        else:
            index[task.id] = position
    unique = not problems
    known = sorted(set(workflows)) if workflows is not None else None
    parents: dict[str, tuple[str, ...]] = {}
    children: dict[str, list[str]] = {task_id: [] for task_id in index}
    for position, task in enumerate(spec.tasks):
        deps = tuple(dict.fromkeys(task.depends_on))
        edges: list[str] = []
        for dep in deps:
            if dep == task.id:
                problems.append(
                    DagValidationError(
                        "a task cannot depend on itself",
                        file=source,
                        task=task.id,
                        field="depends_on",
                    )
                )
            elif dep not in index:
                problems.append(
                    DagValidationError(
                        f"depends on unknown task '{dep}'",
                        file=source,
                        task=task.id,
                        field="depends_on",
                    )
                )
            else:
                edges.append(dep)
        for key in task.params:
            prefix = key.split(NAMESPACE_SEP, 1)[0]
            if NAMESPACE_SEP in key and prefix in deps:
                problems.append(
                    DagValidationError(
                        f"param '{key}' would collide with the output of upstream task "
                        f"'{prefix}' (keys '{prefix}{NAMESPACE_SEP}...' are reserved for it)",
                        file=source,
                        task=task.id,
                        field=f"params.{key}",
                    )
                )
        problems += _map_problems(task, edges, source)
        if known is not None and task.workflow_ref not in known:
            problems.append(
                UnknownWorkflowError(
                    f"Unknown workflow: {task.workflow_ref} (known: {', '.join(known) or 'none'})",
                    file=source,
                    task=task.id,
                    field="workflow_ref",
                )
            )
        if index[task.id] == position:  # a duplicate's edges are not part of the graph
            parents[task.id] = tuple(edges)
            for dep in edges:
                children[dep].append(task.id)
    if not unique:
        raise DagValidationError.collect(problems)
    # Kahn's algorithm with a heap on file position: a stable, readable order.
    pending = {t: len(p) for t, p in parents.items()}
    ready = [index[t] for t, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    ids = spec.task_ids
    while ready:
        node = ids[heapq.heappop(ready)]
        order.append(node)
        for child in children[node]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, index[child])
    if len(order) != len(ids):
        left = [t for t in ids if pending[t] > 0]
        cycle = _find_cycle(left, parents)
        problems.append(
            CycleDetectedError(
                f"Cycle detected in DAG '{spec.name}': {' -> '.join(cycle)}", file=source
            )
        )
    for task in spec.tasks:
        if task.branch and not children[task.id]:
            problems.append(
                DagValidationError(
                    "a branch task needs children to choose from (no task depends on it)",
                    file=source,
                    task=task.id,
                    field="branch",
                )
            )
    if problems:
        raise DagValidationError.collect(problems)
    return Graph(
        order=tuple(order),
        parents=parents,
        children={t: tuple(c) for t, c in children.items()},
    )
