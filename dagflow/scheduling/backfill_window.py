"""A backfill's window and its record (pure): which cron times a window holds, how a time
is written on the command line, and the models :func:`~dagflow.scheduling.backfill.start_backfill`
returns. Time is a parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from dagflow.errors import ScheduleError
from dagflow.scheduling.catchup import fires_between
from dagflow.scheduling.cron import ONE_MINUTE, floor_minute
from dagflow.scheduling.schedules import Schedule, minute_key

#: Most cron times one backfill may start (a wider window is several backfills).
BACKFILL_MAX_MINUTES = 10_000
#: Longest window, in days (the window is scanned minute by minute: about 2 s a year).
BACKFILL_MAX_DAYS = 366

MinuteState = Literal["started", "skipped", "planned", "cancelled"]


class BackfillMinute(BaseModel):
    """One cron time of a backfill.

    Attributes:
        minute: The UTC minute, ``2026-01-01T05:00:00Z``.
        state: ``started`` (this backfill made its job and started its run), ``skipped``
            (another scheduler or backfill claimed it), ``planned`` (a dry run: it would be
            started), ``cancelled`` (the backfill was cancelled before reaching it).
        run_id: The run started (or, when ``skipped``, the claim's owner: the run that other
            claimant chose); None when none is known.
        job_id: The job made (``started`` only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    minute: str
    state: MinuteState
    run_id: str | None = None
    job_id: str | None = None


class BackfillResult(BaseModel):
    """A backfill: what :func:`start_backfill` did (or, with ``dry_run``, would do).

    Attributes:
        backfill_id: Its id (None for a dry run: nothing is kept).
        schedule_id: The schedule.
        start: The window's start, included (UTC, ISO 8601).
        end: The window's end, excluded.
        dry_run: Nothing was claimed or started.
        max_active: ``--max-active`` (None: only the usual limits).
        cancelled: It was cancelled (before or while it started its runs).
        minutes: Every cron time of the window, oldest first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backfill_id: str | None
    schedule_id: str
    start: str
    end: str
    dry_run: bool = False
    max_active: int | None = None
    cancelled: bool = False
    minutes: tuple[BackfillMinute, ...] = ()

    def count(self, state: MinuteState) -> int:
        """Minutes in ``state``."""
        return sum(1 for m in self.minutes if m.state == state)

    @property
    def run_ids(self) -> list[str]:
        """The runs this backfill started, oldest minute first."""
        return [m.run_id for m in self.minutes if m.state == "started" and m.run_id]


class BackfillCancel(BaseModel):
    """What :func:`cancel_backfill` did.

    Attributes:
        backfill_id: The backfill.
        cancelled_runs: Its runs that were waiting or running and are now cancelled.
        ended_runs: Its runs that had already ended (left as they were).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backfill_id: str
    cancelled_runs: tuple[str, ...] = ()
    ended_runs: tuple[str, ...] = ()


def parse_instant(text: str, option: str) -> datetime:
    """``2026-01-01`` (its midnight, UTC) or an ISO 8601 time with a zone (``...Z``).

    Raises:
        ScheduleError: Another form, or a time without a zone (naming ``option``).
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleError(
            f"expected a date (2026-01-01) or a time with a zone (2026-01-01T05:00:00Z), "
            f"got {text!r}",
            field=option,
        ) from None
    if len(text.strip()) == 10:  # a date alone: midnight UTC
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is None:
        raise ScheduleError(f"{text!r} needs a time zone, e.g. {text}Z", field=option)
    return moment.astimezone(UTC)


def backfill_minutes(
    schedule: Schedule, start: datetime, end: datetime, now: datetime
) -> list[datetime]:
    """The UTC minutes ``m`` with ``start <= m < end`` at which the schedule fires (pure).

    Raises:
        ScheduleError: An empty window, an end after ``now`` (the scheduler runs those
            minutes), or more than :data:`BACKFILL_MAX_MINUTES` cron times.
    """
    if end <= start:
        raise ScheduleError("--to must be after --from", task=schedule.id, field="to")
    if end > floor_minute(now) + ONE_MINUTE:
        raise ScheduleError(
            f"--to {minute_key(end)} is after now: the scheduler runs the minutes to come",
            task=schedule.id,
            field="to",
        )
    if end - start > timedelta(days=BACKFILL_MAX_DAYS):
        raise ScheduleError(
            f"the window is longer than {BACKFILL_MAX_DAYS} days: split it into several backfills",
            task=schedule.id,
            field="from",
        )
    first = floor_minute(start) + (ONE_MINUTE if start > floor_minute(start) else timedelta(0))
    last = floor_minute(end - timedelta(microseconds=1))
    minutes = fires_between(
        schedule.expr, schedule.zone, first - ONE_MINUTE, last, limit=BACKFILL_MAX_MINUTES + 1
    )
    if len(minutes) > BACKFILL_MAX_MINUTES:
        raise ScheduleError(
            f"the window holds more than {BACKFILL_MAX_MINUTES} cron times: split it into "
            "several backfills",
            task=schedule.id,
            field="from",
        )
    return minutes
