"""The clock and the one timestamp format every log line uses.

Kept apart from the event log so that code that only needs "now" (the scheduler, the
dashboard, the state store) does not import the event log to read the clock. The pure
core never calls :func:`utc_now`: time is passed to it as a parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a ``Z`` suffix and microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    """The current time, formatted by :func:`isoformat`."""
    return isoformat(utc_now())
