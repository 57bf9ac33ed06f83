"""The DAG file format: models, loading and the checks that need no graph.

A DAG file is YAML, read with PyYAML's safe loader only (``SAFE_LOADER``)::

    name: weekly_ops_chain
    tenant_id: local-dev
    tasks:
      - id: sweep
        workflow_ref: inbox_drive_sweep
        params: {inbox_items: "..."}
        retries: 1
        depends_on: []
        timeout_s: 30        # optional
        trigger_rule: all_done   # optional: when it runs, given how its parents ended
        branch: false        # optional: its output's ``branch`` names the children that run
        queue: gpu           # optional: the Celery queue its step is sent to
        map: list.files      # optional: one instance per item of that parent's output key
        max_parallel: 8      # optional, with map: instances running at once
        pool: warehouse      # optional: at most DAGFLOW_POOLS' size of its steps at once
    params: {day: null}      # optional: run-level params and their defaults
    triggers: [{event: orders.loaded}]   # optional: events that start a run (dagflow trigger)
    queue: default           # optional: the queue of every task without its own
    deadline_s: 3600         # optional: deadline, hooks and webhooks (dagflow.dag.alerts)
    on_failure: [page_owner]
    notify: [{webhook_env: SLACK_WEBHOOK_URL, events: [failed]}]

Unknown keys are errors, every error names the file, the task and the field, and every
problem of a file is reported at once (:attr:`~dagflow.errors.SpecError.errors`).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dagflow.dag.alerts import ALERT_FIELDS, AlertFields
from dagflow.dag.field_errors import describe, field_errors
from dagflow.dag.rules import DEFAULT_RULE, TRIGGER_RULES, unknown_rule
from dagflow.env import POOL_PATTERN, POOL_RULE
from dagflow.errors import DagValidationError, SpecError

#: Task ids become key prefixes (``sweep__summary``) and Redis key parts: keep them plain.
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: ``yaml.safe_load``'s loader, in C when libyaml is there (4x faster on a 10,000-task DAG).
#: Both build only plain Python values: tags such as ``!!python/object`` are refused.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Separator between an upstream task id and its output key in downstream params.
NAMESPACE_SEP = "__"
#: Most ``retries`` a task may have (``retries: 100`` is up to 101 attempts).
RETRIES_MAX = 100
#: Queue names are Redis list names and ``celery worker -Q`` arguments: no whitespace, no
#: control characters, no ``,`` (``-Q`` splits on it), not starting with ``-`` (an option).
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,127}$")
QUEUE_RULE = "1-128 letters, digits, '_', '-', '.' or ':', not starting with '-'"
#: Event names (``orders.loaded``): what ``dagflow trigger NAME`` and the API's URL carry.
EVENT_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
EVENT_RULE = "1-128 letters, digits, '_', '-', '.' or ':', not starting with '-', '.' or ':'"

#: Every field of a DAG file by its README name, and what it expects, for error messages.
FIELDS: dict[str, str] = {
    "name": "a non-empty string",
    "tenant_id": "a non-empty string",
    "tasks": "a list of tasks",
    "tasks[]": "a task (a mapping with id, workflow_ref and optional fields)",
    "tasks[].id": "a task id (1-128 letters, digits, '_', '-' or '.')",
    "tasks[].workflow_ref": "a workflow name (a non-empty string)",
    "tasks[].params": "a mapping of JSON values",
    "tasks[].retries": f"an integer between 0 and {RETRIES_MAX}",
    "tasks[].depends_on": "a list of task ids",
    "tasks[].depends_on[]": "a task id (a string)",
    "tasks[].timeout_s": "a number of seconds greater than 0",
    "tasks[].trigger_rule": f"a trigger rule ({', '.join(TRIGGER_RULES)})",
    "tasks[].branch": "true or false",
    "tasks[].queue": f"a queue name ({QUEUE_RULE})",
    "tasks[].map": "PARENT.KEY: a direct parent's id, '.', and a key of its output",
    "tasks[].max_parallel": "a whole number >= 1: instances of the mapped task running at once",
    "tasks[].pool": f"a pool name ({POOL_RULE}) listed in DAGFLOW_POOLS",
    "params": "a mapping of run-level params and their default values (JSON values)",
    "max_active_runs": "a whole number >= 1: runs of this DAG that may run at once",
    "queue": f"a queue name ({QUEUE_RULE})",
    **ALERT_FIELDS,
    "triggers": "a list of triggers such as [{event: orders.loaded}]",
    "triggers[]": "a trigger (a mapping with event)",
    "triggers[].event": f"an event name ({EVENT_RULE})",
}


class TaskSpec(BaseModel):
    """One task of a DAG.

    Attributes:
        id: Unique within the DAG; letters, digits, ``_``, ``-`` and ``.``.
        workflow_ref: Name of a registered workflow (see ``dagflow.workflows``).
        params: Keyword inputs of the workflow; upstream outputs are added to them.
        retries: Extra attempts after a failure (``retries: 2`` means up to 3 attempts).
        depends_on: Ids of the tasks that must succeed before this one starts.
        timeout_s: Seconds one attempt may run before it counts as failed.
        trigger_rule: When it runs, given how its parents ended (see
            :mod:`dagflow.dag.rules`); ``all_success`` by default.
        branch: Its output's ``branch`` key names the children that run; the others are
            skipped.
        queue: The Celery queue its step is sent to (over the DAG's ``queue``); None
            keeps the default route.
        map: ``PARENT.KEY``: the task runs once per item of the list under ``KEY`` in its
            direct parent ``PARENT``'s output (see :mod:`dagflow.dag.mapping`).
        max_parallel: With ``map``: most instances running at once, across every worker.
        pool: The pool whose slots its steps take (``DAGFLOW_POOLS`` sets its size); None:
            no pool.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(min_length=1)
    workflow_ref: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0, le=RETRIES_MAX)
    depends_on: tuple[str, ...] = ()
    timeout_s: float | None = Field(default=None, gt=0)
    trigger_rule: str = DEFAULT_RULE
    branch: bool = False
    queue: str | None = None
    map: str | None = Field(default=None, min_length=3)
    max_parallel: int | None = Field(default=None, ge=1)
    pool: str | None = None

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not TASK_ID_PATTERN.match(value):
            raise ValueError(
                "must be 1-128 letters, digits, '_', '-' or '.', not starting with '-' or '.'"
            )
        if NAMESPACE_SEP in value:
            raise ValueError(f"must not contain {NAMESPACE_SEP!r} (it separates namespaced keys)")
        return value

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        if value is not None and not QUEUE_PATTERN.fullmatch(value):
            raise ValueError(f"expected a queue name ({QUEUE_RULE}), got {describe(value)}")
        return value

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str | None) -> str | None:
        if value is not None and not POOL_PATTERN.match(value):
            raise ValueError(f"expected a pool name ({POOL_RULE}), got {describe(value)}")
        return value

    @field_validator("params")
    @classmethod
    def _json_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Params travel through the broker as JSON; YAML dates and sets would not.
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"must hold JSON values only ({exc}); quote dates such as '2025-10-01'"
            ) from None
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        # YAML gives lists; strict mode would refuse them for a tuple field.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("trigger_rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in TRIGGER_RULES:
            raise ValueError(unknown_rule(value))
        return value

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _int_timeout(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TriggerSpec(BaseModel):
    """An event that starts a run of the DAG (``dagflow trigger NAME``, see
    :mod:`dagflow.client.triggers`).

    Attributes:
        event: The event's name, such as ``orders.loaded``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    event: str

    @field_validator("event")
    @classmethod
    def _event_name(cls, value: str) -> str:
        if not EVENT_PATTERN.fullmatch(value):
            raise ValueError(f"expected an event name ({EVENT_RULE}), got {describe(value)}")
        return value


class DagSpec(AlertFields):
    """A whole DAG: its ``name``, ``tenant_id``, ``tasks`` and run-level ``params`` defaults.

    The alert fields (``deadline_s``, ``on_failure``, ``on_success``, ``on_deadline_missed``,
    ``notify``) come from :class:`~dagflow.dag.alerts.AlertFields`.

    ``max_active_runs`` caps the runs of this DAG (by name, across every tenant, client and
    scheduler) that run at once; the others wait as ``pending``, in order.

    ``queue`` is the Celery queue of every task that names none itself (None: the default
    route, Celery's ``celery`` queue or what ``task_routes`` says).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    tasks: tuple[TaskSpec, ...]
    params: dict[str, Any] = Field(default_factory=dict)
    max_active_runs: int | None = Field(default=None, ge=1)
    queue: str | None = None
    triggers: tuple[TriggerSpec, ...] = ()

    @field_validator("params")
    @classmethod
    def _json_run_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return TaskSpec._json_params(value)

    @field_validator("queue")
    @classmethod
    def _dag_queue_name(cls, value: str | None) -> str | None:
        return TaskSpec._queue_name(value)

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("triggers", mode="before")
    @classmethod
    def _triggers_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("triggers")
    @classmethod
    def _distinct_events(cls, value: tuple[TriggerSpec, ...]) -> tuple[TriggerSpec, ...]:
        events = [t.event for t in value]
        twice = sorted({e for e in events if events.count(e) > 1})
        if twice:
            raise ValueError(f"event {twice[0]!r} is listed twice")
        return value

    @property
    def events(self) -> tuple[str, ...]:
        """The names of the events that start this DAG (``triggers``), in file order."""
        return tuple(t.event for t in self.triggers)

    @property
    def task_ids(self) -> list[str]:
        """Task ids in file order."""
        return [task.id for task in self.tasks]

    @property
    def pools(self) -> dict[str, str]:
        """Each task's pool, for tasks that have one."""
        return {t.id: t.pool for t in self.tasks if t.pool}

    @property
    def queues(self) -> dict[str, str]:
        """Each task's queue (its own, else the DAG's), for tasks that have one."""
        return {t.id: q for t in self.tasks if (q := t.queue or self.queue)}

    def task(self, task_id: str) -> TaskSpec:
        """Return the task with id ``task_id``."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


def _error_location(data: Any, loc: tuple[int | str, ...]) -> tuple[str | None, str | None]:
    """Map a pydantic error location to (task id, field name) for a one-line error."""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        task_id: str | None = f"#{loc[1] + 1}"
        tasks = data.get("tasks") if isinstance(data, Mapping) else None
        if isinstance(tasks, list) and loc[1] < len(tasks) and isinstance(tasks[loc[1]], Mapping):
            raw_id = tasks[loc[1]].get("id")
            if isinstance(raw_id, str) and raw_id:
                task_id = raw_id
        field = ".".join(str(part) for part in loc[2:]) or None
        return task_id, field
    return None, ".".join(str(part) for part in loc) or None


def check_pools(spec: DagSpec, source: str, sizes: Mapping[str, int]) -> None:
    """Check that every ``pool`` a task names has a size in ``DAGFLOW_POOLS`` (``sizes``).

    Raises:
        DagValidationError: One problem per task naming an unknown pool, each with the
            file, the task and the field.
    """
    known = ", ".join(sorted(sizes)) or "none"
    problems: list[SpecError] = [
        DagValidationError(
            f"pool {task.pool!r} has no size in DAGFLOW_POOLS (known: {known}; "
            f"set e.g. DAGFLOW_POOLS={task.pool}=4)",
            file=source,
            task=task.id,
            field="pool",
        )
        for task in spec.tasks
        if task.pool is not None and task.pool not in sizes
    ]
    if problems:
        raise DagValidationError.collect(problems)


def parse_dag(data: Any, *, source: str = "<dag>") -> DagSpec:
    """Validate already-parsed YAML ``data`` into a :class:`DagSpec` (fields only, no graph).

    Raises:
        DagValidationError: The data is not a DAG mapping, or fields are missing, ill-typed
            or unknown: every such problem is in ``errors``, each with its task and field.
    """
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise DagValidationError(
            f"the document must be a mapping with name, tenant_id and tasks, not {kind}",
            file=source,
        )
    try:
        return DagSpec.model_validate(data)
    except ValidationError as exc:
        problems: list[SpecError] = []
        for loc, message in field_errors(exc, FIELDS):
            task, field = _error_location(data, loc)
            problems.append(DagValidationError(message, file=source, task=task, field=field))
        raise DagValidationError.collect(problems) from None


def read_yaml(path: Path) -> Any:
    """Read ``path`` with the safe loader, turning I/O and syntax errors into one line.

    Raises:
        DagValidationError: The file is missing, unreadable or not valid YAML (with its line).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DagValidationError("file not found", file=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DagValidationError(f"cannot read file: {exc}", file=source) from None
    collecting = gc.isenabled()
    gc.disable()  # a big DAG allocates many small objects: collecting mid-parse only costs time
    try:
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DagValidationError(f"malformed YAML: {problem}", file=source, line=line) from None
    finally:
        if collecting:
            gc.enable()
