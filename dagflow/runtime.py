"""What a worker needs to run steps: settings, run store, event log, retry policy, plan cache.

One :class:`Runtime` is attached to each Celery app. A real worker builds it from the
environment on first use; the embedded mode attaches one with an in-memory store.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagflow.errors import ConfigError
from dagflow.events import Event, JsonlEventLog, isoformat, utc_now
from dagflow.graph import reachable
from dagflow.retry import RetryPolicy
from dagflow.settings import Settings
from dagflow.stores import MemoryRunStore, RedisRunStore, RunStore

if TYPE_CHECKING:
    from celery import Celery

#: Plans kept parsed per worker process (one per run in flight).
PLAN_CACHE_SIZE = 64


@dataclass(frozen=True)
class TaskPlan:
    """One task as the plan stores it, with what its step needs derived once per run.

    Attributes:
        links: Children with this task as their only parent (sent as soon as it succeeds).
        joins: ``(child, number of parents)`` for children with several parents.
    """

    workflow_ref: str
    params: dict[str, Any]
    retries: int
    parents: tuple[str, ...]
    children: tuple[str, ...]
    timeout_s: float | None
    links: tuple[str, ...] = ()
    joins: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class RunPlan:
    """A run's plan as workers read it back from the store."""

    dag_name: str
    tenant_id: str
    tasks: dict[str, TaskPlan]

    @classmethod
    def from_json(cls, raw: str) -> RunPlan:
        """Parse the JSON written by :meth:`dagflow.compile.CompiledDag.plan_json`."""
        data = json.loads(raw)
        raw_tasks: dict[str, Any] = data["tasks"]
        fan_in = {tid: len(t["up"]) for tid, t in raw_tasks.items()}
        tasks = {
            tid: TaskPlan(
                workflow_ref=t["w"],
                params=t["p"],
                retries=t["r"],
                parents=tuple(t["up"]),
                children=tuple(t["down"]),
                timeout_s=t.get("t"),
                links=tuple(c for c in t["down"] if fan_in[c] == 1),
                joins=tuple((c, fan_in[c]) for c in t["down"] if fan_in[c] > 1),
            )
            for tid, t in raw_tasks.items()
        }
        return cls(dag_name=data["dag"], tenant_id=data["tenant"], tasks=tasks)

    def descendants(self, task_id: str) -> list[str]:
        """Every task downstream of ``task_id``, sorted."""
        children = {tid: task.children for tid, task in self.tasks.items()}
        return sorted(reachable(children, task_id))


def store_url(settings: Settings) -> str:
    """The Redis URL that holds run state: the result backend's, else the broker's.

    Raises:
        ConfigError: Neither is a Redis URL.
    """
    for url in (settings.result_backend, settings.broker_url):
        if url and url.startswith(("redis://", "rediss://", "unix://")):
            return url
    raise ConfigError(
        "dagflow keeps run state in Redis: set DAGFLOW_BROKER_URL or DAGFLOW_RESULT_BACKEND "
        "to a redis:// URL"
    )


@dataclass
class Runtime:
    """Everything a step needs besides its message."""

    settings: Settings
    store: RunStore
    events: JsonlEventLog
    retry: RetryPolicy
    _plans: OrderedDict[str, RunPlan] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, store: RunStore | None = None) -> Runtime:
        """Build a runtime; the store is Redis unless one is given (embedded mode)."""
        if store is None:
            store = (
                MemoryRunStore()
                if settings.embedded
                else RedisRunStore(store_url(settings), ttl=settings.run_ttl_s)
            )
        return cls(
            settings=settings,
            store=store,
            events=JsonlEventLog(settings.events_path),
            retry=RetryPolicy(settings.retry_base_s, settings.retry_max_s, settings.retry_jitter),
        )

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

    def emit(self, name: str, run_id: str, plan: RunPlan, **fields: Any) -> None:
        """Write one event for ``run_id``; never raises for an I/O problem."""
        event = Event(
            timestamp=isoformat(utc_now()),
            event=name,  # type: ignore[arg-type]
            run_id=run_id,
            dag_name=plan.dag_name,
            tenant_id=plan.tenant_id,
            **fields,
        )
        self.events.emit(event)


_attach_lock = threading.Lock()


def runtime_for(app: Celery) -> Runtime:
    """Return the app's runtime, building it from the environment the first time."""
    runtime: Runtime | None = getattr(app, "dagflow_runtime", None)
    if runtime is None:
        with _attach_lock:
            runtime = getattr(app, "dagflow_runtime", None)
            if runtime is None:
                runtime = Runtime.from_settings(Settings.from_env())
                app.dagflow_runtime = runtime
    return runtime
