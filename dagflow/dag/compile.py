"""Compile a validated DAG into what Celery runs (pure: builds, never sends).

Celery canvases cannot express a general DAG without running some task twice (a task that
two joins share, celery#893), and a chain of chords embeds the rest of the canvas in every
message (273 kB per message at 10 levels x 100 here). dagflow therefore compiles a DAG into:

* a **start canvas**: ``group`` of one ``dagflow.step`` signature per root task;
* **continuations**: when a task succeeds, the worker that ran it sends its children — a
  child with one parent directly (a chain link, as Celery's chain does), several children
  at once over one producer (a fan-out);
* **joins**: a child with several parents is sent exactly once, by the parent whose
  completion makes the child's set of arrived parents complete (atomic in the run store).

Every message carries only ``(run_id, task_id)``; the plan is stored once per run, so
message size does not grow with the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagflow.dag.graph import Graph, build_graph
from dagflow.dag.mapping import parse_map_ref
from dagflow.dag.plan import RunPlan
from dagflow.dag.rules import DEFAULT_RULE, TRIGGER_RULES
from dagflow.dag.spec import NAMESPACE_SEP, DagSpec

if TYPE_CHECKING:
    from celery import Celery
    from celery.canvas import Signature

#: Name of the one Celery task that runs a DAG step.
STEP_TASK = "dagflow.step"


def step_name(dag_name: str | None, task_id: str) -> str:
    """The name a step is sent under (Celery's ``shadow``): ``<dag name>:<task id>``.

    Flower, ``celery events`` and the worker's log show this name instead of
    ``dagflow.step``, so they say what runs; the task that runs is still ``dagflow.step``.
    Without a DAG name (a plan that is gone), it is ``dagflow.step``.
    """
    return f"{dag_name}:{task_id}" if dag_name else STEP_TASK


@dataclass(frozen=True)
class CompiledDag:
    """A DAG ready to run: its spec, its graph and the plan stored for workers."""

    spec: DagSpec
    graph: Graph

    @property
    def links(self) -> list[tuple[str, str]]:
        """(parent, child) edges where the child has one parent: plain chain links."""
        return [
            (self.graph.parents[c][0], c)
            for c in self.graph.order
            if len(self.graph.parents[c]) == 1
        ]

    @property
    def joins(self) -> dict[str, tuple[str, ...]]:
        """Children with two or more parents, and those parents."""
        return {c: p for c in self.graph.order if len(p := self.graph.parents[c]) > 1}

    def plan(
        self, params: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None
    ) -> RunPlan:
        """The plan workers read: each task's workflow, params, retries and edges, and the
        run-level ``params`` and ``labels`` a workflow's run context shows."""
        return RunPlan.build(
            self.spec.name,
            self.spec.tenant_id,
            {t.id: (t.workflow_ref, t.params, t.retries, t.timeout_s) for t in self.spec.tasks},
            self.graph.parents,
            self.graph.children,
            params=params,
            labels=labels,
            rules={t.id: t.trigger_rule for t in self.spec.tasks if t.trigger_rule != DEFAULT_RULE},
            branches=[t.id for t in self.spec.tasks if t.branch],
            queues=self.spec.queues,
            maps={
                t.id: (*found, t.max_parallel)
                for t in self.spec.tasks
                if t.map and (found := parse_map_ref(t.map, self.graph.parents[t.id]))
            },
            pools=self.spec.pools,
        )

    def start_canvas(self, app: Celery, run_id: str) -> Signature:
        """The canvas sent when a run starts: one step, or a group of the root steps."""
        return steps_canvas(app, run_id, self.graph.roots, self.spec.name, self.spec.queues)


def steps_canvas(
    app: Celery,
    run_id: str,
    task_ids: Sequence[str],
    dag_name: str | None,
    queues: Mapping[str, str] | None = None,
) -> Signature:
    """One step signature, or a group of them, for ``task_ids`` (at least one), each sent
    to its task's queue in ``queues`` (the default route for a task not in it)."""
    from celery import group

    queue_of = queues or {}
    sigs = [
        step_signature(app, run_id, task_id, dag_name, queue_of.get(task_id))
        for task_id in task_ids
    ]
    return sigs[0] if len(sigs) == 1 else group(sigs)


def step_signature(
    app: Celery, run_id: str, task_id: str, dag_name: str | None, queue: str | None = None
) -> Signature:
    """An immutable ``dagflow.step`` signature: the whole message is two short strings,
    sent under :func:`step_name` so monitors show the DAG and the task, to ``queue`` when
    the task has one (an explicit queue wins over ``task_routes``, as in Celery)."""
    options = {"queue": queue} if queue else {}
    return app.signature(
        STEP_TASK,
        args=(run_id, task_id),
        immutable=True,
        shadow=step_name(dag_name, task_id),
        **options,
    )


def compile_dag(spec: DagSpec, graph: Graph | None = None) -> CompiledDag:
    """Compile ``spec`` (checking its graph first if ``graph`` is not given)."""
    return CompiledDag(spec=spec, graph=graph or build_graph(spec))


def describe(compiled: CompiledDag) -> list[str]:
    """Human-readable lines: which parts are canvas and which are joins."""
    graph = compiled.graph
    roots = graph.roots
    lines = ["Celery canvas (sent when the run starts):"]
    steps = ", ".join(f"step({r})" for r in roots)
    lines.append(f"  {'group(' + steps + ')' if len(roots) > 1 else steps}")
    lines.append(
        "Continuations (sent by the worker that finishes the parent; message = run id + task id):"
    )
    shown = False
    for parent in graph.order:
        kids = [c for c in graph.children[parent] if len(graph.parents[c]) == 1]
        if len(kids) == 1:
            lines.append(f"  {parent} -> {kids[0]}  chain link")
            shown = True
        elif kids:
            lines.append(f"  {parent} -> {', '.join(kids)}  fan-out (sent together)")
            shown = True
    if not shown:
        lines.append("  none")
    lines.append("Joins (sent exactly once, by the last parent to finish):")
    joins = compiled.joins
    lines += [f"  {', '.join(ps)} -> {child}" for child, ps in joins.items()] or ["  none"]
    if any(t.trigger_rule != DEFAULT_RULE or t.branch for t in compiled.spec.tasks):
        lines.append("Trigger rules and branches (decided in the same atomic step as the joins):")
        for t in compiled.spec.tasks:
            if t.trigger_rule != DEFAULT_RULE:
                lines.append(f"  {t.id}: {t.trigger_rule} ({TRIGGER_RULES[t.trigger_rule]})")
            if t.branch:
                among = ", ".join(graph.children[t.id])
                lines.append(f"  {t.id}: branch (its output's 'branch' chooses among {among})")
    mapped = [t for t in compiled.spec.tasks if t.map]
    if mapped:
        lines.append("Maps (expanded in the same atomic step that commits the parent's end):")
        for t in mapped:
            most = f", at most {t.max_parallel} at once" if t.max_parallel else ""
            to = ", ".join(graph.children[t.id]) or "none"
            lines.append(
                f"  {t.id}[*]: one step per item of {t.map}{most}; "
                f"{t.id}{NAMESPACE_SEP}results goes to {to} when every instance has ended"
            )
    return lines
