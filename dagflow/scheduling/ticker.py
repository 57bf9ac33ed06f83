"""The scheduler's tick: claim the schedules due this minute and hand back their firings.

Used two ways, with the same :class:`Ticker`:

* ``celery -A dagflow beat`` (production): :mod:`dagflow.scheduling.beat` ticks and sends
  each firing to the workers as a Celery task.
* ``dagflow schedule --dir schedules --once | --serve``: this process ticks and drives the
  runs itself, at most
  ``SCHED_MAX_PARALLEL`` at once (embedded worker, or the broker's workers).

Jobs. Each firing won is also a ``PENDING`` job (:mod:`dagflow.scheduling.job`) added to the job
store's queue, when the ticker has one; whoever ticks then *drains* at most
``SCHED_MAX_JOBS_PER_DRAIN`` jobs per tick and starts them (:mod:`dagflow.scheduling.beat`,
``dagflow schedule``), so a burst of due schedules waits in Redis instead of flooding the
workers.

Exactly once. Every process computes the same due ``{schedule_id, minute}`` pairs and
races for them in :mod:`dagflow.stores.minute_claims`; only the winner writes
``schedule_enqueued`` and enqueues. Any number of schedulers may run at once, with no leader.

Catch-up after downtime. A process remembers, per schedule, up to which minute it has
looked. On start it begins from the schedule's last claimed minute (kept with the claims)
and makes up the minutes missed since then, as the schedule's ``catchup`` policy says
(:mod:`dagflow.scheduling.catchup`): by default only the *latest* due minute at most
:data:`CATCH_UP_S` back (one catch-up run per schedule, not one per missed minute); ``all``
every missed minute of its ``catchup_window``; ``none`` nothing. A schedule that never ran
before starts with the current minute. A process that stalls (a suspended laptop) catches up
the same way on its next tick, from the later of its own mark and the last claimed minute
(another process may have claimed the minutes it slept through, longer ago than a claim
lives). A schedule that is added or edited while serving starts with the current minute.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dagflow.clock import isoformat, utc_now
from dagflow.events.state_store import StateRecorder
from dagflow.scheduling.catchup import catchup_minutes
from dagflow.scheduling.cron import (
    ONE_MINUTE,
    WallMinute,
    fires,
    floor_minute,
    wall_minute,
)
from dagflow.scheduling.firing import Firing
from dagflow.scheduling.schedule_dir import ScheduleDir
from dagflow.scheduling.schedules import Schedule, minute_key, parse_minute_key
from dagflow.stores.jobs import JobStore
from dagflow.stores.minute_claims import MinuteClaims

logger = logging.getLogger("dagflow.scheduler")

#: How far back, in seconds, a starting scheduler makes up missed minutes, for schedules
#: without a ``catchup_window`` (see :mod:`dagflow.scheduling.catchup`).
CATCH_UP_S = 3600


@dataclass
class Ticker:
    """Turns (schedules, claims, now) into the firings this process won.

    Args:
        schedules: The schedules directory (refreshed at each tick).
        claims: Where processes race for ``{schedule_id, minute}``.
        state: The state store that receives ``schedule_enqueued``.
        catch_up_s: How far back a start makes up for one missed minute.
        new_run_id: Makes run ids and job ids (tests make them predictable).
        jobs: Where each firing won becomes a ``PENDING`` job (None: no jobs).
    """

    schedules: ScheduleDir
    claims: MinuteClaims
    state: StateRecorder
    catch_up_s: int = CATCH_UP_S
    new_run_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    jobs: JobStore | None = None
    _seen: dict[str, tuple[Schedule, datetime]] = field(default_factory=dict, init=False)
    _started: bool = field(default=False, init=False)
    _ticked: datetime | None = field(default=None, init=False)

    def due(self, now: datetime) -> list[tuple[Schedule, datetime]]:
        """Advance to ``now`` and return (schedule, UTC minute) pairs to claim.

        Pure apart from the first call, which asks the claims for each schedule's last
        claimed minute (the start of the catch-up).
        """
        current = floor_minute(now)
        fresh = current - ONE_MINUTE
        enabled = [s for s in self.schedules.schedules if s.enabled]
        last: Mapping[str, str] = {}
        if not self._started:
            last = self.claims.last_claimed([s.id for s in enabled])
            self._started = True
        else:
            # After a stall: another process may have claimed what this one slept through.
            stalled = [
                s.id
                for s in enabled
                if (prev := self._seen.get(s.id)) is not None and prev[1] < fresh
            ]
            if stalled:
                last = self.claims.last_claimed(stalled)
        walls: dict[str, WallMinute] = {}
        seen: dict[str, tuple[Schedule, datetime]] = {}
        out: list[tuple[Schedule, datetime]] = []
        for schedule in enabled:
            window_s = schedule.catchup_window_s or self.catch_up_s
            oldest = current - timedelta(seconds=window_s)
            prev = self._seen.get(schedule.id)
            if prev is not None and (prev[0] is schedule or prev[0] == schedule):
                after = prev[1]
                if schedule.id in last:
                    after = max(after, parse_minute_key(last[schedule.id]))
            elif schedule.id in last:
                after = max(parse_minute_key(last[schedule.id]), oldest)
            else:
                after = fresh
            seen[schedule.id] = (schedule, max(after, current))
            if after >= current:
                continue
            if after == fresh:
                wall = walls.get(schedule.timezone)
                if wall is None:
                    wall = walls[schedule.timezone] = wall_minute(current, schedule.zone)
                if fires(schedule.expr, wall):
                    out.append((schedule, current))
                continue
            minutes = catchup_minutes(
                schedule.expr, schedule.zone, schedule.catchup_policy, window_s, after, current
            )
            out += [(schedule, minute) for minute in minutes]
        self._seen = seen
        return out

    def tick(self, now: datetime) -> list[Firing]:
        """Reload changed files, claim what is due at ``now``; return the firings won."""
        changed = self.schedules.refresh()
        current = floor_minute(now)
        if current == self._ticked and not changed:
            return []  # this minute is done and nothing changed: most ticks end here
        self._ticked = current
        due = self.due(now)
        keys: dict[datetime, str] = {}
        tries = [
            (s.id, keys.get(m) or keys.setdefault(m, minute_key(m)), self.new_run_id())
            for s, m in due
        ]
        won = self.claims.claim_many(tries)
        # model_construct: every value comes from a validated Schedule; a tick that
        # enqueues thousands of runs should not validate them again.
        firings = [
            Firing.model_construct(
                schedule_id=s.id,
                dag=s.dag,
                tenant=s.tenant,
                scheduled_minute=key,
                run_id=run_id,
                catch_up=m < current,
                params=s.params,
                job_id=self.new_run_id() if self.jobs is not None else "",
                max_retries=s.max_retries,
                alerts=s.alerts.to_data(),
            )
            for (s, m), (_, key, run_id), ok in zip(due, tries, won, strict=True)
            if ok
        ]
        moment = utc_now()
        if self.jobs is not None and firings:
            enqueued = moment.timestamp()
            self.jobs.add([f.job(enqueued) for f in firings])
        stamp = isoformat(moment)
        self.state.record_events(
            [
                f.state_event("schedule_enqueued", stamp, catch_up=f.catch_up, job_id=f.job_id)
                for f in firings
            ]
        )
        for firing in firings:
            logger.info(
                "dagflow: enqueued %s for %s%s (run %s)",
                firing.schedule_id,
                firing.scheduled_minute,
                " (catch-up)" if firing.catch_up else "",
                firing.run_id,
            )
        return firings


@dataclass
class Clock:
    """The scheduler CLI's clock: real time, or a fast test clock.

    ``DAGFLOW_SCHED_CLOCK_START=2026-01-01T00:00:00Z`` and ``DAGFLOW_SCHED_CLOCK_SPEED=60``
    (simulated seconds per real second) make a ``--serve`` process live through minutes in
    seconds; only this CLI reads them, so no production path can pick them up by accident.
    """

    start: datetime | None = None
    speed: float = 1.0
    _t0: float = field(default_factory=time.monotonic, init=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Clock:
        """Build from the test variables (real time if unset)."""
        start = env.get("DAGFLOW_SCHED_CLOCK_START")
        speed = float(env.get("DAGFLOW_SCHED_CLOCK_SPEED") or 1.0)
        return cls(parse_time(start) if start else None, speed)

    def now(self) -> datetime:
        """The current (possibly simulated) UTC time."""
        if self.start is None:
            return utc_now()
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def seconds_to_next_minute(self) -> float:
        """Real seconds until the next minute starts on this clock."""
        now = self.now()
        left = (floor_minute(now) + ONE_MINUTE - now).total_seconds()
        return left / self.speed


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return moment


def next_sleep(tick_s: float, to_next_minute_s: float) -> float:
    """Sleep one tick, but wake just after the minute turns, so firings are not late."""
    return max(0.0, min(tick_s, to_next_minute_s + 0.002))


def drain(jobs: JobStore, limit: int) -> list[Firing]:
    """Take at most ``limit`` ``PENDING`` jobs off the queue: the firings to start now.

    They stay marked as draining until their start is confirmed (``jobs.sent``), so a
    process that dies holding them gives them back
    (:func:`dagflow.scheduling.job_hooks.sweep_jobs`).
    """
    if limit <= 0:
        return []
    return [Firing.from_job(job) for job in jobs.drain(limit, utc_now().timestamp())]


def serve(
    ticker: Ticker,
    clock: Clock,
    tick_s: float,
    stop: threading.Event,
    enqueue: Callable[[Firing], None],
    take: Callable[[], list[Firing]] | None = None,
) -> None:
    """Tick until ``stop`` is set, handing each firing to ``enqueue``.

    Without ``take``, the firings won are enqueued; with it, each tick then enqueues what
    ``take`` drains from the job queue (the won firings are jobs in that queue).
    """
    while not stop.is_set():
        try:
            won = ticker.tick(clock.now())
            for firing in won if take is None else take():
                enqueue(firing)
        except Exception:
            # A Redis outage must not end the scheduler: the next tick tries again.
            logger.exception("dagflow: scheduler tick failed")
        stop.wait(next_sleep(tick_s, clock.seconds_to_next_minute()))
