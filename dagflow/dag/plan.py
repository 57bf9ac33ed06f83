"""The stored plan: the contract between the client that starts a run and every worker.

The client writes it once per run (:meth:`RunPlan.to_json`); each worker reads it back once
per run per process (:meth:`RunPlan.from_json`). It is versioned: a worker refuses a plan
of a version it does not know, with an error that says which, instead of misreading it
(a rolling upgrade where old and new workers share a queue must not run a step wrongly).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from dagflow.dag.alerts import Alerts
from dagflow.dag.graph import reachable
from dagflow.dag.mapping import split_instance
from dagflow.dag.rules import DEFAULT_RULE
from dagflow.errors import PlanVersionError

#: The plan format this dagflow writes and reads. Bump it on any change a reader must know.
#: 3: run-level ``params`` and ``labels`` (what a workflow's run context shows).
#: 4: a task's ``trigger_rule``, ``branch`` and ``queue``. A plan that uses none of them is
#: still written as version 3: a worker of the previous version runs it correctly, and
#: refuses only the plans whose rules it would ignore or whose steps it would misroute.
#: 5: a task's ``map``, ``max_parallel`` and ``pool``, and the run's ``alerts`` (deadline,
#: hooks, webhooks; :mod:`dagflow.dag.alerts`), written only by plans that use one: an
#: older worker would misrun a map, ignore a pool's limit or end the run telling nobody.
PLAN_VERSION = 5
#: The versions this dagflow reads (a version 3 plan's tasks are ``all_success``).
READABLE_VERSIONS = (3, 4, 5)
#: The version a plan with alerts needs.
ALERTS_VERSION = 5


@dataclass(frozen=True)
class TaskPlan:
    """One task as the plan stores it, with what its step needs derived once per run.

    Attributes:
        workflow_ref: The registered workflow the task runs.
        params: The task's own params (upstream outputs are merged in at run time).
        retries: Attempts after the first one.
        parents: Tasks it depends on.
        children: Tasks that depend on it.
        timeout_s: Seconds one attempt may take, or None.
        links: Children with this task as their only parent (sent as soon as it succeeds).
        joins: ``(child, number of parents)`` for children with several parents.
        trigger_rule: When it runs, given how its parents ended (:mod:`dagflow.dag.rules`).
        branch: Its output's ``branch`` key chooses which children run.
        queue: The Celery queue its step is sent to, or None for the default route.
        map_from: ``(parent, key)`` of a mapped task: it runs once per item of that list
            in that parent's output (:mod:`dagflow.dag.mapping`); None for other tasks.
        max_parallel: With ``map_from``: most instances running at once (None: no cap).
        pool: The pool whose slots its steps take, or None.
    """

    workflow_ref: str
    params: Mapping[str, Any]
    retries: int
    parents: tuple[str, ...]
    children: tuple[str, ...]
    timeout_s: float | None = None
    links: tuple[str, ...] = ()
    joins: tuple[tuple[str, int], ...] = ()
    trigger_rule: str = DEFAULT_RULE
    branch: bool = False
    queue: str | None = None
    map_from: tuple[str, str] | None = None
    max_parallel: int | None = None
    pool: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything a worker needs to run any step of one run.

    Attributes:
        params: The run-level params (the DAG's ``params:`` defaults with ``--param``
            values over them), shown to workflows through :class:`dagflow.RunContext`.
        labels: The run's labels a workflow may see: ``schedule_id`` and
            ``scheduled_minute`` of a scheduled run, ``retry_of`` of a retry.
        alerts: Whom the run's end and a missed deadline are told to (its DAG's and its
            schedule's ``on_failure``, ``notify``...; see :mod:`dagflow.dag.alerts`).
    """

    dag_name: str
    tenant_id: str
    tasks: Mapping[str, TaskPlan]
    version: int = PLAN_VERSION
    params: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    alerts: Alerts = field(default_factory=Alerts)

    @classmethod
    def build(
        cls,
        dag_name: str,
        tenant_id: str,
        tasks: Mapping[str, tuple[str, Mapping[str, Any], int, float | None]],
        parents: Mapping[str, tuple[str, ...]],
        children: Mapping[str, tuple[str, ...]],
        *,
        params: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        rules: Mapping[str, str] | None = None,
        branches: Collection[str] = (),
        queues: Mapping[str, str] | None = None,
        maps: Mapping[str, tuple[str, str, int | None]] | None = None,
        pools: Mapping[str, str] | None = None,
    ) -> RunPlan:
        """Build a plan from each task's ``(workflow_ref, params, retries, timeout_s)``.

        Args:
            rules: The tasks whose ``trigger_rule`` is not ``all_success``, and their rule.
            branches: The ``branch: true`` tasks.
            queues: The tasks that have a queue, and their queue.
            maps: The mapped tasks, and their ``(parent, key, max_parallel)``.
            pools: The tasks that have a pool, and their pool.
        """
        built = {
            tid: _task(ref, task_params, retries, timeout, parents, children, tid)
            for tid, (ref, task_params, retries, timeout) in tasks.items()
        }
        for tid, rule in (rules or {}).items():
            built[tid] = replace(built[tid], trigger_rule=rule)
        for tid in branches:
            built[tid] = replace(built[tid], branch=True)
        for tid, queue in (queues or {}).items():
            built[tid] = replace(built[tid], queue=queue)
        for tid, (parent, key, most) in (maps or {}).items():
            built[tid] = replace(built[tid], map_from=(parent, key), max_parallel=most)
        for tid, pool in (pools or {}).items():
            built[tid] = replace(built[tid], pool=pool)
        return cls(
            dag_name=dag_name,
            tenant_id=tenant_id,
            tasks=built,
            params=dict(params or {}),
            labels=dict(labels or {}),
        )

    @cached_property
    def ruled(self) -> bool:
        """True if a task has a trigger rule other than ``all_success``, is a branch or
        is mapped.

        Such a run decides each child from its parents' ends in the finish (the store's
        rule path, which also expands mapped tasks); a run without is sent along its links
        and joins, as cheaply as before.
        """
        return any(
            t.trigger_rule != DEFAULT_RULE or t.branch or t.map_from for t in self.tasks.values()
        )

    @cached_property
    def mapped(self) -> bool:
        """True if a task is mapped (its instances are ``task[i]``)."""
        return any(t.map_from for t in self.tasks.values())

    def knows(self, task_id: str) -> bool:
        """Whether ``task_id`` is a task of this plan or an instance of a mapped one."""
        if task_id in self.tasks:
            return True
        base, index = split_instance(task_id)
        return index is not None and base in self.tasks and bool(self.tasks[base].map_from)

    def task(self, task_id: str) -> TaskPlan:
        """The plan of ``task_id``; of its mapped task for an instance (``process[3]``).

        Raises:
            KeyError: Neither a task nor an instance of a mapped task.
        """
        found = self.tasks.get(task_id)
        if found is not None:
            return found
        if not self.knows(task_id):
            raise KeyError(task_id)
        return self.tasks[split_instance(task_id)[0]]

    @cached_property
    def queues(self) -> Mapping[str, str]:
        """Each task's queue, for the tasks that have one (empty for most DAGs)."""
        return {tid: task.queue for tid, task in self.tasks.items() if task.queue}

    @cached_property
    def pools(self) -> Mapping[str, str]:
        """Each task's pool, for the tasks that have one (empty for most DAGs)."""
        return {tid: task.pool for tid, task in self.tasks.items() if task.pool}

    def to_json(self) -> str:
        """The plan as compact JSON (written once per run)."""
        tasks = {}
        for tid, task in self.tasks.items():
            entry: dict[str, Any] = {
                "workflow_ref": task.workflow_ref,
                "params": task.params,
                "retries": task.retries,
                "parents": list(task.parents),
                "children": list(task.children),
            }
            if task.timeout_s is not None:
                entry["timeout_s"] = task.timeout_s
            if task.trigger_rule != DEFAULT_RULE:
                entry["trigger_rule"] = task.trigger_rule
            if task.branch:
                entry["branch"] = True
            if task.queue is not None:
                entry["queue"] = task.queue
            if task.map_from is not None:
                entry["map"] = list(task.map_from)
                if task.max_parallel is not None:
                    entry["max_parallel"] = task.max_parallel
            if task.pool is not None:
                entry["pool"] = task.pool
            tasks[tid] = entry
        # The oldest version that holds what this plan uses: older workers run it.
        if self.mapped or self.pools or not self.alerts.empty:
            version = self.version
        elif self.ruled or self.queues:
            version = min(self.version, 4)
        else:
            version = min(self.version, READABLE_VERSIONS[0])
        data = {"version": version, "dag": self.dag_name, "tenant": self.tenant_id}
        run: dict[str, Any] = {"params": dict(self.params), "labels": dict(self.labels)}
        if not self.alerts.empty:
            run["alerts"] = self.alerts.to_data()
        return json.dumps({**data, **run, "tasks": tasks}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> RunPlan:
        """Parse a stored plan.

        Raises:
            PlanVersionError: The plan's format version is not one of
                :data:`READABLE_VERSIONS`.
        """
        data = json.loads(raw)
        version = data.get("version", data.get("v")) if isinstance(data, dict) else None
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise PlanVersionError(
                f"stored plan has version {version!r}; this dagflow reads version "
                f"{', '.join(map(str, READABLE_VERSIONS[:-1]))} or {READABLE_VERSIONS[-1]} "
                "(run the same dagflow version on clients and workers)"
            )
        raw_tasks: dict[str, Any] = data["tasks"]
        parents = {tid: tuple(t["parents"]) for tid, t in raw_tasks.items()}
        children = {tid: tuple(t["children"]) for tid, t in raw_tasks.items()}
        plan = cls.build(
            data["dag"],
            data["tenant"],
            {
                tid: (t["workflow_ref"], t["params"], t["retries"], t.get("timeout_s"))
                for tid, t in raw_tasks.items()
            },
            parents,
            children,
            params=data.get("params") or {},
            labels=data.get("labels") or {},
            rules={tid: t["trigger_rule"] for tid, t in raw_tasks.items() if "trigger_rule" in t},
            branches=[tid for tid, t in raw_tasks.items() if t.get("branch")],
            queues={tid: t["queue"] for tid, t in raw_tasks.items() if t.get("queue")},
            maps={
                tid: (t["map"][0], t["map"][1], t.get("max_parallel"))
                for tid, t in raw_tasks.items()
                if t.get("map")
            },
            pools={tid: t["pool"] for tid, t in raw_tasks.items() if t.get("pool")},
        )
        if data.get("alerts"):
            plan = replace(plan, alerts=Alerts.from_data(data["alerts"]))
        return plan

    def descendants(self, task_id: str) -> list[str]:
        """Every task downstream of ``task_id`` (of its mapped task for an instance), sorted.

        Found once per task per plan (a plan never changes), from the task's own subgraph:
        every step of a ruled run asks for its own, and reading the whole plan each time made
        a step's cost grow with the plan's size.
        """
        base = split_instance(task_id)[0]
        found = self.derived.get(("descendants", base))
        if found is None:
            found = tuple(sorted(reachable(self._children, base)))
            self.derived[("descendants", base)] = found
        return list(found)

    @cached_property
    def _children(self) -> dict[str, tuple[str, ...]]:
        return {tid: task.children for tid, task in self.tasks.items()}

    @cached_property
    def derived(self) -> dict[Hashable, Any]:
        """Values derived from this plan, kept as long as the plan is (it never changes):
        what a step would otherwise compute again at every step of the run, such as
        :meth:`descendants` and a task's finish gates
        (:func:`dagflow.execution.fanout.finish_gates`). Keys are tuples naming the value."""
        return {}


def _task(
    ref: str,
    params: Mapping[str, Any],
    retries: int,
    timeout_s: float | None,
    parents: Mapping[str, tuple[str, ...]],
    children: Mapping[str, tuple[str, ...]],
    tid: str,
) -> TaskPlan:
    kids = children[tid]
    return TaskPlan(
        workflow_ref=ref,
        params=params,
        retries=retries,
        parents=parents[tid],
        children=kids,
        timeout_s=timeout_s,
        links=tuple(c for c in kids if len(parents[c]) == 1),
        joins=tuple((c, len(parents[c])) for c in kids if len(parents[c]) > 1),
    )
