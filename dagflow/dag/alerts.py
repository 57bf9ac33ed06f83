"""What a run tells people when it ends or runs late: hooks, webhooks and a deadline (pure).

A DAG file (and a schedule entry, for that schedule's runs) may set::

    deadline_s: 3600                    # a run not ended an hour after it started is late
    on_failure: [page_owner]            # registered workflows, called with the run's summary
    on_success: []
    on_deadline_missed: [page_owner]
    notify:                             # the built-in webhook notifier
      - {webhook_env: SLACK_WEBHOOK_URL, events: [failed, deadline_missed]}

:class:`Alerts` holds them. It is stored with the run's plan (plan version 5, written only
when a run has alerts), so every worker that ends the run knows whom to tell; the webhook's
URL is never stored: ``webhook_env`` names an environment variable of the worker.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dagflow.dag.field_errors import describe
from dagflow.errors import DagValidationError, SpecError

#: What a ``notify:`` entry may be told of (not ``on:``, which YAML 1.1 reads as ``true``).
NOTIFY_EVENTS = ("failed", "success", "deadline_missed")
#: What a ``notify:`` entry is told of when it names no ``events``.
DEFAULT_NOTIFY_EVENTS = ("failed", "deadline_missed")
#: The hook fields and the run end each one answers.
HOOK_FIELDS = {
    "failed": "on_failure",
    "success": "on_success",
    "deadline_missed": "on_deadline_missed",
}
#: An environment variable's name, as POSIX shells accept it.
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

Trigger = Literal["failed", "success", "deadline_missed"]

#: The alert fields of a DAG file or a schedule entry and what each expects (README names).
ALERT_FIELDS: dict[str, str] = {
    "deadline_s": "a number of seconds greater than 0",
    "on_failure": "a list of registered workflow names",
    "on_failure[]": "a workflow name (a non-empty string)",
    "on_success": "a list of registered workflow names",
    "on_success[]": "a workflow name (a non-empty string)",
    "on_deadline_missed": "a list of registered workflow names",
    "on_deadline_missed[]": "a workflow name (a non-empty string)",
    "notify": "a list of notifiers such as {webhook_env: SLACK_WEBHOOK_URL, events: [failed]}",
    "notify[]": "a notifier (a mapping with webhook_env and optional events)",
    "notify[].webhook_env": "the name of an environment variable holding the webhook's URL",
    "notify[].events": f"a list of events ({', '.join(NOTIFY_EVENTS)})",
    "notify[].events[]": f"an event ({', '.join(NOTIFY_EVENTS)})",
}


class Webhook(BaseModel):
    """One ``notify:`` entry: POST the run's summary to the URL in ``webhook_env``.

    Attributes:
        webhook_env: The worker's environment variable that holds the URL (the secret never
            goes into the YAML or Redis).
        events: The run ends it is told of.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    webhook_env: str
    events: tuple[str, ...] = DEFAULT_NOTIFY_EVENTS

    @model_validator(mode="before")
    @classmethod
    def _no_on_key(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare ``on:`` key as the boolean true.
        if isinstance(data, dict) and any(key is True or key == "on" for key in data):
            raise ValueError(
                "unknown key 'on' (YAML reads a bare on: as true): write events: [failed, ...]"
            )
        return data

    @field_validator("webhook_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if "://" in value:
            raise ValueError(
                "expected the name of an environment variable holding the URL, not the URL "
                "itself (the URL is a secret: keep it out of the YAML)"
            )
        if not ENV_NAME_PATTERN.match(value):
            raise ValueError(
                f"expected an environment variable name (letters, digits and '_', not "
                f"starting with a digit), got {describe(value)}"
            )
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            if not value:
                raise ValueError(f"expected at least one event ({', '.join(NOTIFY_EVENTS)})")
            for item in value:
                if isinstance(item, str) and item not in NOTIFY_EVENTS:
                    close = difflib.get_close_matches(item, NOTIFY_EVENTS, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise ValueError(
                        f"unknown event {item!r}{hint}; expected {', '.join(NOTIFY_EVENTS)}"
                    )
        return value


class AlertFields(BaseModel):
    """The alert fields, shared by a DAG file, a schedule entry and :class:`Alerts`.

    Attributes:
        deadline_s: Seconds after the run's start (a schedule's: after the scheduled minute)
            by which it should have ended; None for no deadline.
        on_failure: Workflows called once when the run ends ``failed``.
        on_success: Workflows called once when the run ends ``success``.
        on_deadline_missed: Workflows called once when the run misses its deadline.
        notify: Webhooks, each told of the run ends its ``events`` name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    deadline_s: float | None = Field(default=None, gt=0)
    on_failure: tuple[str, ...] = ()
    on_success: tuple[str, ...] = ()
    on_deadline_missed: tuple[str, ...] = ()
    notify: tuple[Webhook, ...] = ()

    @field_validator("on_failure", "on_success", "on_deadline_missed", "notify", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("on_failure", "on_success", "on_deadline_missed")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name for name in value):
            raise ValueError("expected workflow names, got an empty string")
        return value

    @field_validator("deadline_s", mode="before")
    @classmethod
    def _int_deadline(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def alerts(self) -> Alerts:
        """These fields as an :class:`Alerts` value."""
        return Alerts(
            deadline_s=self.deadline_s,
            on_failure=self.on_failure,
            on_success=self.on_success,
            on_deadline_missed=self.on_deadline_missed,
            notify=self.notify,
        )


class Alerts(AlertFields):
    """A run's deadline, hooks and webhooks, as the plan stores them (see the module doc)."""

    @property
    def empty(self) -> bool:
        """True when there is nothing to tell anyone (the plan then stays at its old version)."""
        return self == Alerts()

    def hooks(self, trigger: str) -> tuple[str, ...]:
        """The workflows to call for ``trigger`` (``failed``, ``success``, ``deadline_missed``)."""
        field = HOOK_FIELDS.get(trigger)
        return tuple(getattr(self, field)) if field else ()

    def webhooks(self, trigger: str) -> tuple[str, ...]:
        """The ``webhook_env`` names to POST to for ``trigger`` (each once)."""
        return tuple(dict.fromkeys(w.webhook_env for w in self.notify if trigger in w.events))

    def merged(self, other: Alerts) -> Alerts:
        """These alerts and ``other``'s together (a schedule's added to its DAG's).

        Hooks and webhooks are the union (each once, these first); the deadline is this
        one's if set, else ``other``'s (the caller turns both into one time, the earlier).
        """

        def union(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
            return tuple(dict.fromkeys([*a, *b]))

        return Alerts(
            deadline_s=self.deadline_s if self.deadline_s is not None else other.deadline_s,
            on_failure=union(self.on_failure, other.on_failure),
            on_success=union(self.on_success, other.on_success),
            on_deadline_missed=union(self.on_deadline_missed, other.on_deadline_missed),
            notify=tuple(dict.fromkeys([*self.notify, *other.notify])),
        )

    def to_data(self) -> dict[str, Any]:
        """The alerts as JSON values, without the fields left at their defaults."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @classmethod
    def from_data(cls, data: Any) -> Alerts:
        """Inverse of :meth:`to_data` (``{}`` or None: no alerts)."""
        return cls.model_validate(data or {}, strict=False)


def unknown_hooks(
    alerts: Alerts,
    known: Sequence[str],
    *,
    source: str,
    entry: str | None = None,
    error: type[SpecError] = DagValidationError,
) -> list[SpecError]:
    """One error per hook that names no registered workflow (each naming file and field).

    Args:
        alerts: The alerts to check.
        known: The registered workflow names.
        source: The file, for the message.
        entry: The schedule entry (shown where a task would be), if any.
        error: The error class (:class:`ScheduleError` for a schedule entry).
    """
    names = sorted(set(known))
    problems: list[SpecError] = []
    for field in HOOK_FIELDS.values():
        for name in getattr(alerts, field):
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(
                    error(
                        f"unknown workflow {name!r}{hint}: hooks are registered workflows "
                        f"(known: {', '.join(names) or 'none'})",
                        file=source,
                        task=entry,
                        field=field,
                    )
                )
    return problems


def alert_lines(alerts: Alerts) -> list[str]:
    """What ``dagflow plan`` shows of a DAG's alerts (nothing for a DAG without)."""
    lines = []
    if alerts.deadline_s is not None:
        lines.append(f"Deadline: {alerts.deadline_s:g} s after the run starts")
    for field in HOOK_FIELDS.values():
        names = getattr(alerts, field)
        if names:
            lines.append(f"Hooks {field}: {', '.join(names)}")
    for hook in alerts.notify:
        lines.append(f"Webhook ${hook.webhook_env}: on {', '.join(hook.events)}")
    return lines
