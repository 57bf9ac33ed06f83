"""Schedule files: the model, the minute key, and loading a directory that may change.

A schedule file is YAML: a list of entries, or one entry::

    - id: weekly_ops_chain
      cron: "*/5 * * * *"            # standard 5 fields, see dagflow.scheduling.cron
      dag: dags/weekly_ops_chain.yaml  # relative to the deployment root (the working directory)
      tenant: local-dev
      enabled: true                  # default true
      timezone: Europe/Paris         # IANA name, default UTC
      max_retries: 2                 # retry a failed run from failure, default 0
      deadline_s: 900                # optional: late 15 minutes after the scheduled minute
      on_failure: [page_owner]       # optional: hooks and webhooks for this schedule's runs,
      notify: [{webhook_env: SLACK_WEBHOOK_URL}]   # added to the DAG's (dagflow.dag.alerts)
      catchup: latest                # after downtime: latest | all | none, default latest
      catchup_window: 1h             # how far back to make up missed minutes, default 1h

``dag`` is resolved against the deployment root (where the scheduler and the workers run,
next to ``dags/`` and ``schedules/``), and refused if it points outside it: a schedule file
must not be able to run an arbitrary YAML file on the workers.

:class:`ScheduleDir` reloads the directory when a file is added, changed or removed, and
keeps the last good version of a file that turns bad, so a typo never stops a schedule.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, ValidationError, field_validator

from dagflow.dag.alerts import ALERT_FIELDS, AlertFields, unknown_hooks
from dagflow.dag.field_errors import field_errors, field_path
from dagflow.dag.spec import TASK_ID_PATTERN, read_yaml
from dagflow.errors import ScheduleError, SpecError
from dagflow.scheduling.catchup import CatchupPolicy, parse_policy, parse_window
from dagflow.scheduling.cron import CronExpr, parse_cron

logger = logging.getLogger(__name__)

#: File name endings read from a schedules directory.
SCHEDULE_SUFFIXES = (".yaml", ".yml")
#: Every field of a schedule entry and what it expects, for error messages.
FIELDS: dict[str, str] = {
    "id": "a schedule id (1-128 letters, digits, '_', '-' or '.')",
    "cron": 'a cron expression in quotes, such as "*/5 * * * *"',
    "dag": "the path of a DAG file (a non-empty string)",
    "tenant": "a tenant id (a non-empty string)",
    "enabled": "true or false",
    "timezone": "an IANA time zone name, such as Europe/Paris",
    "params": "a mapping of run-level params for the DAG's params: block (JSON values)",
    "max_retries": "an integer >= 0: how many times a failed run is retried from failure",
    **ALERT_FIELDS,
    "catchup": "latest, all or none: which missed minutes a starting scheduler makes up",
    "catchup_window": "a duration such as 30m, 6h or 1d (at most 24h)",
}
#: Format of ``scheduled_minute`` everywhere (labels, state events, claim keys): UTC, seconds 00.
MINUTE_FORMAT = "%Y-%m-%dT%H:%M:00Z"


def minute_key(minute: datetime) -> str:
    """Return the UTC minute of the aware ``minute`` as ``2026-11-26T10:05:00Z``."""
    return minute.astimezone(UTC).strftime(MINUTE_FORMAT)


def parse_minute_key(key: str) -> datetime:
    """Inverse of :func:`minute_key`."""
    return datetime.strptime(key, MINUTE_FORMAT).replace(tzinfo=UTC)


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name`` (cached).

    Raises:
        ValueError: Unknown name.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. UTC, Europe/Paris)") from None


class Schedule(AlertFields):
    """One schedule entry: run ``dag`` for ``tenant`` whenever ``cron`` matches.

    The alert fields (``deadline_s``, ``on_failure``, ``notify``...) apply to this
    schedule's runs in addition to the DAG's; ``deadline_s`` counts from the scheduled minute.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(min_length=1)
    cron: str = Field(min_length=1)
    dag: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    enabled: bool = True
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)
    max_retries: int = Field(default=0, ge=0)
    catchup: str = CatchupPolicy.LATEST.value
    catchup_window: str | None = None

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        # Ids become Redis key parts and state-store values.
        if not TASK_ID_PATTERN.match(value):
            raise ValueError("must be 1-128 letters, digits, '_', '-' or '.'")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        parse_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("catchup")
    @classmethod
    def _valid_policy(cls, value: str) -> str:
        return parse_policy(value).value

    @field_validator("catchup_window")
    @classmethod
    def _valid_window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @property
    def catchup_policy(self) -> CatchupPolicy:
        """What a starting scheduler makes up (see :mod:`dagflow.scheduling.catchup`)."""
        return CatchupPolicy(self.catchup)

    @property
    def catchup_window_s(self) -> int | None:
        """The catch-up window in seconds, or None for the scheduler's default (1 hour)."""
        return None if self.catchup_window is None else parse_window(self.catchup_window)

    @property
    def expr(self) -> CronExpr:
        """The parsed cron expression."""
        return parse_cron(self.cron)

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return zone(self.timezone)


def _entry_errors(raw: Any, index: int, source: str, exc: ValidationError) -> list[SpecError]:
    name = raw.get("id") if isinstance(raw, dict) else None
    entry = name if isinstance(name, str) and name else f"#{index + 1}"
    return [
        ScheduleError(message, file=source, task=entry, field=field_path(loc) or None)
        for loc, message in field_errors(exc, FIELDS)
    ]


def parse_schedules(data: Any, *, source: str = "<schedules>") -> list[Schedule]:
    """Validate parsed YAML (a list of entries or one entry) into schedules (pure).

    Raises:
        ScheduleError: Bad entries: every problem is in ``errors``, each with the file, the
            entry id and the field.
    """
    items = data if isinstance(data, list) else [data]
    if data is None or not all(isinstance(item, dict) for item in items):
        raise ScheduleError(
            "the document must be a schedule entry or a list of entries (id, cron, dag, tenant)",
            file=source,
        )
    schedules: list[Schedule] = []
    problems: list[SpecError] = []
    seen: set[str] = set()
    for index, raw in enumerate(items):
        try:
            schedule = Schedule.model_validate(raw)
        except ValidationError as exc:
            problems += _entry_errors(raw, index, source, exc)
            continue
        if schedule.id in seen:
            problems.append(
                ScheduleError("duplicate id in this file", file=source, task=schedule.id)
            )
            continue
        seen.add(schedule.id)
        schedules.append(schedule)
    if problems:
        raise ScheduleError.collect(problems)
    return schedules


def unknown_schedule_hooks(
    schedules: list[Schedule], source: str, known: list[str]
) -> list[SpecError]:
    """One error per hook of an entry that names no registered workflow (see
    :func:`dagflow.dag.alerts.unknown_hooks`)."""
    problems: list[SpecError] = []
    for schedule in schedules:
        problems += unknown_hooks(
            schedule.alerts, known, source=source, entry=schedule.id, error=ScheduleError
        )
    return problems


def check_dag_path(schedule: Schedule, root: Path, source: str) -> Path:
    """Resolve the schedule's ``dag`` under ``root`` and check it is a file inside it.

    Raises:
        ScheduleError: The path leaves the root or is not a file.
    """
    base = root.resolve()
    target = (base / schedule.dag).resolve()
    if not target.is_relative_to(base):
        raise ScheduleError(
            f"{schedule.dag!r} resolves outside the deployment root {base}",
            file=source,
            task=schedule.id,
            field="dag",
        )
    if not target.is_file():
        raise ScheduleError(
            f"DAG file {schedule.dag!r} not found under {base}",
            file=source,
            task=schedule.id,
            field="dag",
        )
    return target


def load_schedule_file(path: str | Path, root: Path | None = None) -> list[Schedule]:
    """Read, validate and check the DAG paths of one schedule file.

    Args:
        path: The YAML file.
        root: The deployment root that ``dag`` paths are relative to (the working directory).

    Raises:
        ScheduleError: Unreadable or malformed YAML (as for DAGs), or a bad entry.
    """
    try:
        data = read_yaml(Path(path))
    except SpecError as exc:
        raise ScheduleError(exc.message, file=exc.file, line=exc.line) from None
    return schedules_from_data(data, str(path), root)


def schedules_from_data(data: Any, source: str, root: Path | None = None) -> list[Schedule]:
    """Validate already-read YAML ``data`` of the schedule file ``source`` (see above).

    Raises:
        ScheduleError: Bad entries, or ``dag`` paths that are missing or outside ``root``
            (every problem is in ``errors``).
    """
    schedules = parse_schedules(data, source=source)
    problems: list[SpecError] = []
    for schedule in schedules:
        try:
            check_dag_path(schedule, root or Path.cwd(), source)
        except ScheduleError as exc:
            problems.append(exc)
    if problems:
        raise ScheduleError.collect(problems)
    return schedules
