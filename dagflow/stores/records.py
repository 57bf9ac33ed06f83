"""The values the run store's operations return: claims, ends, snapshots, sweep findings.

Frozen dataclasses shared by both stores (:mod:`dagflow.stores.base` re-exports them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from dagflow.dag.rules import READ_ALL_MAX

ClaimResult = Literal["run", "busy", "gone", "ok", "failed", "skipped", "cancelled", "mapped"]


@dataclass(frozen=True)
class Claim:
    """What :meth:`RunStore.claim` said.

    Attributes:
        state: ``run`` (execute it under the lease), ``busy`` (another delivery holds a live
            lease), ``gone`` (the run's state is not in the store) or the task's terminal
            state (it already finished; ``cancelled`` also when this claim found the run
            cancelled and ended the task so: then ``recorded`` is True).
        outputs: The parents' output JSON, when ``state`` is ``run``.
        fence: The lease's fencing number (the attempt's idempotency key).
        attempt: 1 + the attempts of this task that failed so far.
        took_over: The worker whose expired lease this claim replaced, or "".
        holder: For ``busy``: the worker holding the lease.
        recorded: True if this claim ended the task as ``cancelled`` (the run was cancelled).
        complete: With ``recorded``: this claim ended the run's last open task.
    """

    state: ClaimResult
    outputs: Mapping[str, str] = field(default_factory=dict)
    fence: int = 0
    attempt: int = 1
    took_over: str = ""
    holder: str = ""
    recorded: bool = False
    complete: bool = False


@dataclass(frozen=True)
class FinishResult:
    """What :meth:`RunStore.finish` did.

    Attributes:
        complete: True for exactly one call per run: the one that finished its last task.
        newly_skipped: Descendants this call marked skipped (not those skipped before).
        counts: Tasks ``ok``, ``failed``, ``skipped`` and ``cancelled`` so far.
        ready: Children this call made ready (in the outbox now: send them).
        pushed: Those of ``ready`` whose step messages the store pushed onto the broker
            queue in the same atomic step (see :class:`Push`): send only the others.
        lost: True if the caller's lease was no longer current: nothing was written.
        recorded: True if this call set the task's end (False if it had ended before).
        cancelled: True if the run was cancelled: the task ended ``cancelled`` (not the
            state asked for), its output and event were not written.
        skip_reasons: With ``gates``: why each of ``newly_skipped`` was skipped (the
            ``task_skip`` event's ``error``).
    """

    complete: bool
    newly_skipped: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    ready: tuple[str, ...] = ()
    lost: bool = False
    recorded: bool = True
    cancelled: bool = False
    pushed: tuple[str, ...] = ()
    skip_reasons: Mapping[str, str] = field(default_factory=dict)
    mapped: MapChanges = field(default_factory=lambda: MapChanges())


@dataclass(frozen=True)
class MapChanges:
    """What a finish did to mapped tasks (:mod:`dagflow.dag.mapping`), for their events.

    Attributes:
        expanded: Mapped tasks this call expanded, and their number of instances.
        ended: Mapped tasks this call ended (``ok`` or ``failed``): all their instances
            ended, they had none, or their parent's list was unusable.
        errors: Of ``ended``: why a mapped task failed.
    """

    expanded: Mapping[str, int] = field(default_factory=dict)
    ended: Mapping[str, str] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: str | None) -> MapChanges:
        """Parse the finish script's ``{"e": ..., "d": ..., "x": ...}`` ('' for nothing).

        ``cjson`` writes an empty table as ``{}``, so an empty part is a mapping too.
        """
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            expanded={k: int(v) for k, v in (data.get("e") or {}).items()},
            ended={k: str(v) for k, v in (data.get("d") or {}).items()},
            errors={k: str(v) for k, v in (data.get("x") or {}).items()},
        )


@dataclass(frozen=True)
class Gate:
    """One task below a finished one, as the rule path of :meth:`RunStore.finish` sees it.

    Attributes:
        task_id: The task.
        rule: Its trigger rule (:mod:`dagflow.dag.rules`).
        parents: Its parents, whose states decide it.
        children: Its children, decided next if it is skipped.
        map_from: For a mapped task: the parent whose list it maps over (expanded instead
            of made ready), else "".
        max_parallel: For a mapped task: instances ready at once (0: all).
        workflow_ref: Its workflow, for the ``task_skip``, ``map_expand`` and ``map_done``
            lines a store that writes events appends in the finish ("": none).
    """

    task_id: str
    rule: str
    parents: tuple[str, ...]
    children: tuple[str, ...]
    map_from: str = ""
    max_parallel: int = 0
    workflow_ref: str = ""


@dataclass(frozen=True)
class Gates:
    """What a finish needs to decide the finished task's children by their trigger rules.

    Given (instead of ``links``, ``joins`` and ``skip``) for a run whose plan has trigger
    rules or branches. The store decides each child from its parents' states when the end
    is recorded: ready (into the outbox), skipped (an end too: its own children are decided
    next) or left waiting for its other parents.

    Attributes:
        children: The finished task's children, decided first.
        nodes: Every task below the finished one (a skip can reach any of them).
        unchosen: For a branch task that succeeded: the children it did not choose, skipped
            whatever their rule.
    """

    children: tuple[str, ...]
    nodes: tuple[Gate, ...]
    unchosen: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The compact JSON the Redis finish script decodes (``cjson``); encoded once per
        value (:func:`~dagflow.execution.fanout.finish_gates` keeps one per task)."""
        return self._json

    @cached_property
    def _json(self) -> str:
        nodes: dict[str, dict[str, Any]] = {}
        for g in self.nodes:
            # A wide task's parents are stored with the run; its number of parents is sent.
            many = len(g.parents) > READ_ALL_MAX
            parents = {"k": len(g.parents)} if many else {"p": g.parents}
            nodes[g.task_id] = {"r": g.rule, **parents, "c": g.children}
            if g.map_from:
                nodes[g.task_id]["m"] = [g.map_from, g.max_parallel]
            if g.workflow_ref:
                nodes[g.task_id]["w"] = g.workflow_ref
        return json.dumps({"c": self.children, "n": nodes, "u": self.unchosen})


@dataclass(frozen=True)
class Push:
    """Step messages for :meth:`RunStore.finish` to push onto the broker's queue itself.

    Only a store on the broker's own Redis can do it: the children's messages then reach
    the queue in the same atomic step that makes them ready, with no publish after it.

    Attributes:
        queue: The broker's Redis list that workers consume ``dagflow.step`` from.
        messages: A ready-to-push message for each link (child whose only parent this is).
    """

    queue: str
    messages: Mapping[str, str]


@dataclass(frozen=True)
class CancelResult:
    """What :meth:`RunStore.cancel` did.

    Attributes:
        state: ``cancelled`` (the run is marked cancelled, now or before), ``finished`` (it
            had ended: nothing changed) or ``gone`` (unknown or expired).
        newly_cancelled: Tasks this call ended as ``cancelled``.
        running: ``(task_id, token)`` of steps running under a live lease: interrupt them
            (the token is the Celery message id); they end ``cancelled`` when they commit.
        complete: True if this call ended the run's last open task (close the run).
        counts: The run's counts after the call.
        status: For ``finished``: the run's final status.
    """

    state: Literal["cancelled", "finished", "gone"]
    newly_cancelled: tuple[str, ...] = ()
    running: tuple[tuple[str, str], ...] = ()
    complete: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    status: str = ""


@dataclass(frozen=True)
class RunSnapshot:
    """A run's progress as a waiter sees it.

    Attributes:
        status: ``running``, ``success``, ``failed`` or ``cancelled``.
        counts: Tasks ``ok``, ``failed``, ``skipped``, ``cancelled`` so far, and ``total``.
        states: Each task's state (``pending``, ``running``, ``retry`` or terminal), if asked for.
        meta: The run's metadata (dag name, tenant, labels, start and finish times).
        run_id: The run's id.
    """

    status: str
    counts: Mapping[str, int]
    states: Mapping[str, str] | None
    meta: Mapping[str, Any]
    run_id: str = ""


@dataclass(frozen=True)
class FinishRequest:
    """One task's end, as a step (or an operator's revoke) asks the run store to record it.

    Attributes:
        run_id: The run.
        task_id: The task that ended.
        fence: The caller's fencing number; 0 ends the task from outside (a revoked step):
            allowed unless another delivery than ``token`` holds a live lease.
        state: ``ok`` or ``failed``.
        output: The output JSON of an ``ok`` task.
        skip: Descendants to mark skipped (when ``state`` is ``failed``).
        skip_refs: The workflow of each task of ``skip``, for the ``task_skip`` lines a
            store that writes events appends with them.
        total: How many tasks the run has.
        links: Children with this task as their only parent (ready when it is ``ok``).
        joins: ``(child, number of parents)`` for each child with several parents.
        grace_s: Seconds the outbox waits before the sweeper re-sends a ready child.
        token: With ``fence`` 0: the delivery that is allowed to end it.
        event: The ``task_ok``/``task_fail`` record, written only by the call that records
            the end (see :attr:`RunStore.writes_events`); a store that writes it also
            appends, after it, a ``task_skip`` line for each task the call skipped and a
            ``map_expand``/``map_done`` line for each mapped task it expanded or ended,
            with the record's ``timestamp``, ``run_id``, ``dag_name`` and ``tenant_id``.
        end: How the attempt ended, kept with the task if this call records its end.
        push: Messages for the links, pushed onto the broker queue with the links this call
            makes ready (a store that cannot ignores it; see ``FinishResult.pushed``).
        gates: For a plan with trigger rules, branches or maps: decide the children by
            their rules (``links``, ``joins`` and ``skip`` are then empty). The call that
            records the end decides, so a duplicate finish changes nothing.
        maps: For an ``ok`` end: each mapped child's number of instances (``"3"``) or
            why it fails (``"!MapError: ..."``), from this task's output
            (:func:`dagflow.dag.mapping.map_length`); recorded with the end.
    """

    run_id: str
    task_id: str
    fence: int
    state: Literal["ok", "failed"]
    output: str | None = None
    skip: Sequence[str] = ()
    skip_refs: Mapping[str, str] = field(default_factory=dict)
    total: int = 0
    links: Sequence[str] = ()
    joins: Sequence[tuple[str, int]] = ()
    grace_s: float = 30.0
    token: str = ""
    event: Mapping[str, Any] | None = None
    end: AttemptEnd | None = None
    push: Push | None = None
    gates: Gates | None = None
    maps: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt of a task ended, kept with the task (the store's ``info`` hash).

    Written by :meth:`RunStore.finish` and :meth:`RunStore.retry` in the same atomic call
    as the end itself, so ``dagflow status`` reads it from any host, without the event log.

    Attributes:
        duration_s: Seconds the attempt ran.
        error: ``ErrorName: message`` of a failed attempt; for a task's last attempt, the
            seed's line ``RunnerError: Task 'x' failed after N attempts: ...``.
        traceback: The workflow's own frames of a failed attempt (see
            :mod:`dagflow.execution.tracebacks`), or None.
    """

    duration_s: float | None = None
    error: str | None = None
    traceback: str | None = None

    def to_json(self) -> str:
        """The JSON stored for the task (null fields left out)."""
        fields = {"duration_s": self.duration_s, "error": self.error, "traceback": self.traceback}
        return json.dumps({k: v for k, v in fields.items() if v is not None})

    @classmethod
    def from_json(cls, raw: str | None) -> AttemptEnd:
        """Parse :meth:`to_json`'s output; an empty or unreadable value gives an empty end."""
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(
            duration_s=data.get("duration_s"),
            error=data.get("error"),
            traceback=data.get("traceback"),
        )


@dataclass(frozen=True)
class TaskInfo:
    """One task of a run as ``dagflow status`` shows it.

    Attributes:
        task_id: The task.
        state: ``pending``, ``running``, ``retry``, ``ok``, ``failed``, ``skipped`` or
            ``cancelled``.
        attempts: Attempts started so far (0 for a task that never ran).
        worker: The Celery node of the last attempt, or "".
        fence: The last attempt's lease fencing number (0: never claimed).
        last: How the last finished attempt ended (empty while the first one runs).
    """

    task_id: str
    state: str
    attempts: int = 0
    worker: str = ""
    fence: int = 0
    last: AttemptEnd = field(default_factory=AttemptEnd)


@dataclass(frozen=True)
class SweepResult:
    """What one :meth:`RunStore.sweep` found (already re-armed in the store).

    Attributes:
        expired: ``(run_id, task_id, worker, fence)`` of leases that expired: re-send them.
        due: ``(run_id, task_id)`` of outbox entries that are due: re-send them.
        idle_runs: Runs nothing touched for the idle period: check them for a stall.
        cancelled_runs: Cancelled runs whose expired leases or outbox entries were dropped
            instead of re-sent: cancel them again to end those tasks and close the run.
    """

    expired: tuple[tuple[str, str, str, int], ...] = ()
    due: tuple[tuple[str, str], ...] = ()
    idle_runs: tuple[str, ...] = ()
    cancelled_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunInspection:
    """Everything the sweeper needs to tell a slow run from a stalled one.

    Attributes:
        exists: False if the run's state is gone from the store (expired or flushed).
        done: True if the run already has its final status.
        dag_name: From the run index (kept even when the state is gone).
        tenant_id: Likewise.
        states: Each task's state.
        live: Tasks with a live lease or an outbox entry: something will move them.
        cancelled: True if the run was cancelled (it is closed by cancelling it again).
    """

    exists: bool
    done: bool
    dag_name: str
    tenant_id: str
    states: Mapping[str, str]
    live: frozenset[str]
    cancelled: bool = False
