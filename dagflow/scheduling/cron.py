"""Cron expressions and when they fire, as pure functions of (expression, time zone, minute).

Parsing is croniter's (``croniter.expand``): the standard five fields with ``*``, ``*/n``,
ranges, lists, month and weekday names, ``0``/``7`` for Sunday and the ``@daily``-style
aliases. dagflow only adds the match, so a tick can test ten thousand schedules in a few
milliseconds: an expression becomes five frozensets once, and matching is set lookups.

Daylight-saving time. A schedule runs on its time zone's wall clock, but it is keyed and
de-duplicated by UTC minute, so it fires at most once per real minute. Two rules, those of
Vixie cron, make the jumps safe:

* **Skipped hour** (clocks go forward): a wall time the jump skips fires once, at the first
  minute after the jump, and never again later. Schedules whose hour field is ``*`` follow
  real time instead: the hour did not happen, so neither did its firings.
* **Repeated hour** (clocks go back): a fixed wall time fires on its first occurrence only.
  Schedules whose hour field is ``*`` follow real time and fire in both passes, as an
  "every 5 minutes" schedule should.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

#: The five fields, in order, as error messages name them.
FIELD_NAMES: tuple[str, ...] = ("minute", "hour", "day-of-month", "month", "day-of-week")
#: What each field accepts, for error messages.
FIELD_HINTS: tuple[str, ...] = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-7 or sun-sat")
ONE_MINUTE = timedelta(minutes=1)
_ALLOWED = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*/,-")


class CronSyntaxError(ValueError):
    """Raised when a cron expression is invalid; ``part`` names the cron field, if known."""

    def __init__(self, message: str, part: str | None = None) -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A parsed five-field expression: the values each field allows.

    Attributes:
        text: The expression as written.
        minutes, hours, days, months: Allowed values (days 1-31, months 1-12).
        weekdays: Allowed days of the week, 0 = Sunday (cron's numbering).
        restricted_days: Both day fields are restricted, so a day matches if *either* does
            (standard cron; when one is ``*`` they combine with AND, which is the same thing).
        any_hour: The hour field is ``*``: DST jumps follow real time (see the module doc).
    """

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    restricted_days: bool
    any_hour: bool

    def matches(self, wall: datetime) -> bool:
        """True if the wall-clock minute ``wall`` (its own fields, no conversion) matches."""
        if (
            wall.minute not in self.minutes
            or wall.hour not in self.hours
            or wall.month not in self.months
        ):
            return False
        day = wall.day in self.days
        weekday = wall.isoweekday() % 7 in self.weekdays
        return (day or weekday) if self.restricted_days else (day and weekday)


def _values(expanded: Sequence[int | str], low: int, high: int) -> frozenset[int]:
    if expanded == ["*"]:
        return frozenset(range(low, high + 1))
    return frozenset(int(v) for v in expanded)


def _diagnose(parts: list[str]) -> CronSyntaxError:
    """Find the first bad field by expanding each alone (only on the error path)."""
    for index, part in enumerate(parts):
        probe = ["*"] * 5
        probe[index] = part
        try:
            croniter.expand(" ".join(probe))
        except Exception:
            return CronSyntaxError(
                f"{FIELD_NAMES[index]} field {part!r} is invalid "
                f"(use {FIELD_HINTS[index]}, with *, */n, a-b and lists)",
                FIELD_NAMES[index],
            )
    return CronSyntaxError(f"invalid cron expression {' '.join(parts)!r}")


@functools.lru_cache(maxsize=4096)
def parse_cron(text: str) -> CronExpr:
    """Parse a standard five-field cron expression (cached: schedules share expressions).

    Raises:
        CronSyntaxError: Wrong number of fields, or a field croniter refuses (named in the
            message), or a non-standard extension (``L``, ``#``, ``H``, seconds).
    """
    stripped = text.strip()
    if stripped.startswith("@"):
        if stripped.lower() == "@reboot":
            raise CronSyntaxError("@reboot is not a schedule")
        parts = [stripped]
    else:
        parts = stripped.split()
        if len(parts) != 5:
            raise CronSyntaxError(
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
            )
        for index, part in enumerate(parts):
            if not set(part) <= _ALLOWED:
                raise CronSyntaxError(
                    f"{FIELD_NAMES[index]} field {part!r} uses a non-standard character "
                    f"(use {FIELD_HINTS[index]}, with *, */n, a-b and lists)",
                    FIELD_NAMES[index],
                )
    try:
        fields, nth = croniter.expand(stripped)
    except Exception:
        raise _diagnose(parts) from None
    for index, values in enumerate(fields[:5]):
        if "l" in values or (index == 4 and nth):
            raise CronSyntaxError(
                f"{FIELD_NAMES[index]} field {parts[min(index, len(parts) - 1)]!r} uses "
                f"L or #, which standard cron does not have",
                FIELD_NAMES[index],
            )
    if len(fields) != 5:
        raise CronSyntaxError("only the standard five fields are supported (no seconds)")
    days, weekdays = fields[2], fields[4]
    return CronExpr(
        text=text,
        minutes=_values(fields[0], 0, 59),
        hours=_values(fields[1], 0, 23),
        days=_values(days, 1, 31),
        months=_values(fields[3], 1, 12),
        weekdays=_values(weekdays, 0, 6),
        restricted_days=days != ["*"] and weekdays != ["*"],
        any_hour=fields[1] == ["*"],
    )


@dataclass(frozen=True, slots=True)
class WallMinute:
    """One UTC minute as a time zone's wall clock shows it.

    Attributes:
        wall: The naive wall-clock minute.
        repeated: The wall clock is in its second pass over a repeated hour.
        skipped: Wall minutes a forward jump skipped just before this one (usually none).
    """

    wall: datetime
    repeated: bool
    skipped: tuple[datetime, ...]


def wall_minute(minute: datetime, zone: tzinfo) -> WallMinute:
    """Describe the UTC ``minute`` (aware) on ``zone``'s wall clock."""
    local = minute.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    before = (minute - ONE_MINUTE).astimezone(zone).replace(tzinfo=None, fold=0)
    gap = int((wall - before) / ONE_MINUTE) - 1
    skipped = tuple(before + ONE_MINUTE * (i + 1) for i in range(gap)) if gap > 0 else ()
    return WallMinute(wall=wall, repeated=bool(local.fold), skipped=skipped)


def fires(expr: CronExpr, at: WallMinute) -> bool:
    """True if ``expr`` fires at the wall minute ``at`` (DST rules in the module doc)."""
    if at.repeated and not expr.any_hour:
        return False
    if expr.matches(at.wall):
        return True
    return not expr.any_hour and any(expr.matches(w) for w in at.skipped)


def fires_at(expr: CronExpr, zone: tzinfo, minute: datetime) -> bool:
    """True if ``expr`` on ``zone``'s wall clock fires at the UTC ``minute``."""
    return fires(expr, wall_minute(minute, zone))


def floor_minute(moment: datetime) -> datetime:
    """Return the UTC minute that contains the aware ``moment``."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def latest_fire(expr: CronExpr, zone: tzinfo, after: datetime, upto: datetime) -> datetime | None:
    """The latest UTC minute ``m`` with ``after < m <= upto`` at which ``expr`` fires.

    Both bounds are UTC minutes. Used for one catch-up run after downtime: only the most
    recent missed minute matters, never one run per missed minute.
    """
    minute = upto
    while minute > after:
        if fires_at(expr, zone, minute):
            return minute
        minute -= ONE_MINUTE
    return None
