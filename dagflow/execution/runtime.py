"""What a worker needs to run steps: settings, run store, event log, retry policy, plan cache.

One :class:`Runtime` is attached to each Celery app. A real worker builds it from the
environment on first use; the embedded mode attaches one with an in-memory store.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dagflow.clock import isoformat, utc_now
from dagflow.dag.plan import RunPlan
from dagflow.errors import ConfigError
from dagflow.events.jsonl import ReadStats
from dagflow.events.log import Event
from dagflow.execution.backoff import RetryPolicy
from dagflow.execution.heartbeat import Heartbeat
from dagflow.execution.outputs import Outputs
from dagflow.settings import Settings
from dagflow.stores import RunStore
from dagflow.stores.jobs import JobStore, MemoryJobStore
from dagflow.stores.pools import PoolStore

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where events go: the JSONL file (embedded, ``DAGFLOW_EVENTS=file``) or the stream."""

    def emit(self, event: Event) -> bool:
        """Write one event; False (logged) if it could not be written. Never raises."""

    def read(self, stats: ReadStats | None = None) -> list[dict[str, Any]]:
        """Every event still held, oldest first (for tools and tests)."""


#: Plans kept parsed per worker process (one per run in flight).
PLAN_CACHE_SIZE = 64


@dataclass(frozen=True)
class RunEnded:
    """What a run-finished hook is told when a run ends.

    Attributes:
        status: ``success``, ``failed`` or ``cancelled``.
        duration_s: Seconds from the run's start to its end.
        labels: The labels the run was started with (``schedule_id`` for scheduled runs).
    """

    run_id: str
    dag_name: str
    tenant_id: str
    status: str
    duration_s: float
    labels: Mapping[str, Any]


@dataclass(frozen=True)
class RunStarted:
    """What a run-started hook is told when a run starts (its steps are sent).

    A run held back by a ``max_active_runs`` limit starts when it is admitted, not when it
    was submitted.
    """

    run_id: str
    dag_name: str
    tenant_id: str
    labels: Mapping[str, Any]


#: Called once when a run starts, in the process that started it (jobs go ``RUNNING``).
RunStartedHook = Callable[[RunStarted], None]
#: Called once when a run ends, in the process that ended it (dramatiq's
#: ``after_process_message``): scheduling installs one to write ``run_finished``.
RunFinishedHook = Callable[[RunEnded], None]
#: Called at every sweep with the Celery app and the runtime; returns what it did.
SweepHook = Callable[[Any, "Runtime"], object]
#: Called after every sweep with what it did (action -> how many; zeros left out), so
#: what the sweeper does reaches the event stream (``dagflow_sweeper_actions_total``).
SweepReportHook = Callable[[Mapping[str, int]], None]


@dataclass
class Runtime:
    """Everything a step needs besides its message (and the jobs its run hooks update)."""

    settings: Settings
    store: RunStore
    events: EventSink
    retry: RetryPolicy
    jobs: JobStore = field(default_factory=MemoryJobStore)
    heartbeat: Heartbeat = field(init=False)
    run_finished_hooks: list[RunFinishedHook] = field(default_factory=list)
    run_started_hooks: list[RunStartedHook] = field(default_factory=list)
    #: Called with the app and this runtime at every sweep, after the run store's own work:
    #: scheduling installs one that puts back and retries jobs.
    sweep_hooks: list[SweepHook] = field(default_factory=list)
    #: The slots of ``pool:`` tasks (:mod:`dagflow.execution.pools`); None: pools are off
    #: (a runtime built without :func:`dagflow.wiring.build_runtime`).
    pools: PoolStore | None = None
    sweep_report_hooks: list[SweepReportHook] = field(default_factory=list)
    #: The Celery app this runtime is attached to (set by :func:`runtime_for`): what ends a
    #: run uses it to start the waiting runs its slots were freed for.
    app: Any = field(default=None, repr=False)
    #: Large outputs by reference (:mod:`dagflow.execution.outputs`); built from the
    #: settings, with an in-memory index, when not given (``__post_init__``).
    outputs: Outputs = None  # type: ignore[assignment]
    _plans: OrderedDict[str, RunPlan] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, run_id: str) -> RunPlan | None:
        """Return the run's parsed plan, reading the store once per run per process."""
        with self._lock:
            cached = self._plans.get(run_id)
            if cached is not None:
                self._plans.move_to_end(run_id)
                return cached
        raw = self.store.load_plan(run_id)
        if raw is None:
            return None
        plan = RunPlan.from_json(raw)
        with self._lock:
            self._plans[run_id] = plan
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def __post_init__(self) -> None:
        self.heartbeat = Heartbeat(self.store, self.settings.lease_s)
        if self.outputs is None:
            self.outputs = Outputs.from_settings(self.settings)
        _runtimes[id(self)] = self

    def run_started(self, started: RunStarted) -> None:
        """Call every run-started hook; a failing hook is logged, never raised."""
        for hook in self.run_started_hooks:
            try:
                hook(started)
            except Exception:
                logger.exception("dagflow: run-started hook %r failed for %s", hook, started.run_id)

    def run_finished(self, ended: RunEnded) -> None:
        """Call every run-finished hook; a failing hook is logged, never raised."""
        for hook in self.run_finished_hooks:
            try:
                hook(ended)
            except Exception:
                logger.exception("dagflow: run-finished hook %r failed for %s", hook, ended.run_id)

    def swept(self, app: Any) -> list[object]:
        """Call every sweep hook; return what each did. A failing hook is logged, and the
        next sweep calls it again."""
        done: list[object] = []
        for hook in self.sweep_hooks:
            try:
                done.append(hook(app, self))
            except Exception:
                logger.exception("dagflow: sweep hook %r failed", hook)
        return done

    def sweep_reported(self, actions: Mapping[str, int]) -> None:
        """Call every sweep-report hook with what a sweep did; a failing hook is logged."""
        for hook in self.sweep_report_hooks:
            try:
                hook(actions)
            except Exception:
                logger.exception("dagflow: sweep-report hook %r failed", hook)

    def emit_with_commit(self, event: Event, implied: Iterable[Event] = ()) -> None:
        """Write the event of a store commit (``task_ok``, ``dag_start``...) and the events
        its decisions imply (a finish's ``task_skip``, ``map_expand`` and ``map_done``): a
        store that writes events appended them all inside that commit, so only another
        store's go to the event sink here. The one place that rule lives.

        ``implied`` is iterated only then: given a generator, they are not even built when
        the store wrote them.
        """
        if not self.store.writes_events:
            self.events.emit(event)
            for line in implied:
                self.events.emit(line)

    def emit(self, name: str, run_id: str, plan: RunPlan, **fields: Any) -> None:
        """Write one event for ``run_id``; never raises for an I/O problem."""
        self.emit_raw(name, run_id, plan.dag_name, plan.tenant_id, **fields)

    def event(self, name: str, run_id: str, plan: RunPlan, **fields: Any) -> Event:
        """Build (not write) one event of ``run_id``."""
        return Event(
            timestamp=isoformat(utc_now()),
            event=name,  # type: ignore[arg-type]
            run_id=run_id,
            dag_name=plan.dag_name,
            tenant_id=plan.tenant_id,
            **fields,
        )

    def emit_raw(
        self, name: str, run_id: str, dag_name: str, tenant_id: str, **fields: Any
    ) -> None:
        """Write one event for a run whose plan may be gone (see :meth:`emit`)."""
        event = Event(
            timestamp=isoformat(utc_now()),
            event=name,  # type: ignore[arg-type]
            run_id=run_id,
            dag_name=dag_name,
            tenant_id=tenant_id,
            **fields,
        )
        self.events.emit(event)


_attach_lock = threading.Lock()
#: Every runtime of this process, so a forked child can renew their locks.
_runtimes: weakref.WeakValueDictionary[int, Runtime] = weakref.WeakValueDictionary()


def _fresh_locks_in_child() -> None:
    """Give a forked pool process unlocked copies of the locks threads may hold at the fork.

    The worker's sweeper thread builds the runtime (under ``_attach_lock``) and reads plans
    (under ``Runtime._lock``) while the main thread forks pool processes; a child that
    inherits one of them held would block on it forever at its first step.
    """
    global _attach_lock
    _attach_lock = threading.Lock()
    for runtime in list(_runtimes.values()):
        runtime._lock = threading.Lock()
        runtime.heartbeat._lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


def runtime_for(app: Celery) -> Runtime:
    """Return the app's runtime, building it the first time it is needed.

    An app made by :func:`dagflow.celery_app.make_app` carries a factory for its own
    settings; an app given dagflow's tasks by :func:`dagflow.tasks.register` alone builds
    one from the environment (:func:`dagflow.wiring.build_runtime`).

    Raises:
        ConfigError: The app has neither.
    """
    runtime: Runtime | None = getattr(app, "dagflow_runtime", None)
    if runtime is None:
        with _attach_lock:
            runtime = getattr(app, "dagflow_runtime", None)
            if runtime is None:
                factory: Callable[[], Runtime] | None = getattr(
                    app, "dagflow_runtime_factory", None
                )
                if factory is None:
                    raise ConfigError(
                        "this Celery app has no dagflow runtime: build it with "
                        "dagflow.celery_app.make_app, or register dagflow's tasks on it "
                        "with dagflow.tasks.register"
                    )
                runtime = factory()
                runtime.app = app
                app.dagflow_runtime = runtime
    return runtime
