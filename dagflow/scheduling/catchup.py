"""Catch-up policies: which missed minutes a scheduler makes up after downtime (pure).

A scheduler that starts, or wakes from a stall, finds the minutes it missed since a
schedule's last claimed minute. A schedule entry says what to do with them::

    catchup: latest          # default: only the most recent missed minute (one run)
    catchup: all             # every missed minute, oldest first (one run each)
    catchup: none            # none: carry on from the current minute
    catchup_window: 6h       # how far back to look (default 1h; 30m, 6h, 1d; at most 24h)

``latest`` with a one-hour window is what dagflow always did, and stays the default.
Minutes older than the window are never made up by a scheduler; ``dagflow backfill`` runs
those on purpose. Every function here takes the time as a parameter.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from dagflow.scheduling.cron import ONE_MINUTE, CronExpr, fires_at, latest_fire

#: The window of a schedule that names none, in seconds: one hour, as before policies existed.
DEFAULT_WINDOW_S = 3600
#: The longest window, in seconds: a start scans the window minute by minute per schedule.
MAX_WINDOW_S = 24 * 3600
_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


class CatchupPolicy(StrEnum):
    """What a scheduler does with the minutes it missed."""

    LATEST = "latest"  # the most recent missed minute only
    ALL = "all"  # every missed minute in the window, oldest first
    NONE = "none"  # none


def parse_policy(text: str) -> CatchupPolicy:
    """The policy named ``text``.

    Raises:
        ValueError: Not a policy; the message lists them.
    """
    try:
        return CatchupPolicy(text)
    except ValueError:
        names = ", ".join(p.value for p in CatchupPolicy)
        raise ValueError(f"expected one of {names}, got {text!r}") from None


def parse_window(text: str) -> int:
    """Seconds of a window written ``30m``, ``6h`` or ``1d``.

    Raises:
        ValueError: Another form, zero, or more than :data:`MAX_WINDOW_S`.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 30m, 6h or 1d, got {text!r}")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not 60 <= seconds <= MAX_WINDOW_S:
        raise ValueError(f"must be between 1m and 24h, got {text!r} (use dagflow backfill)")
    return seconds


def fires_between(
    expr: CronExpr, zone: tzinfo, after: datetime, upto: datetime, limit: int | None = None
) -> list[datetime]:
    """Every UTC minute ``m`` with ``after < m <= upto`` at which ``expr`` fires, in order
    (only the first ``limit`` when given)."""
    out: list[datetime] = []
    minute = after + ONE_MINUTE
    while minute <= upto and (limit is None or len(out) < limit):
        if fires_at(expr, zone, minute):
            out.append(minute)
        minute += ONE_MINUTE
    return out


def catchup_minutes(
    expr: CronExpr,
    zone: tzinfo,
    policy: CatchupPolicy,
    window_s: int,
    after: datetime,
    current: datetime,
) -> list[datetime]:
    """The UTC minutes to claim at ``current`` for a schedule looked at up to ``after``.

    Args:
        expr: The schedule's cron expression.
        zone: Its time zone.
        policy: Its catch-up policy.
        window_s: How far back from ``current`` missed minutes count, in seconds.
        after: The last minute already handled (claimed, or looked at by this process).
        current: The current UTC minute (it is due if the cron fires at it, whatever the
            policy: it is not a missed minute).

    Returns:
        Minutes in ascending order; those before ``current`` are catch-ups.
    """
    if after >= current:
        return []
    start = max(after, current - timedelta(seconds=window_s))
    if policy == CatchupPolicy.NONE:
        return [current] if fires_at(expr, zone, current) else []
    if policy == CatchupPolicy.LATEST:
        minute = latest_fire(expr, zone, start, current)
        return [] if minute is None else [minute]
    return fires_between(expr, zone, start, current)
