"""The scheduler: each tick, claim the schedules due this minute and enqueue their runs.

Used two ways, with the same :class:`Ticker`:

* ``celery -A dagflow beat`` (production): :mod:`dagflow.beat` ticks and sends each firing
  to the workers as a Celery task.
* ``python -m dagflow.scheduler --dir schedules --once | --serve`` (also
  ``dagflow schedule ...``): this process ticks and drives the runs itself, at most
  ``SCHED_MAX_PARALLEL`` at once (embedded worker, or the broker's workers).

Exactly once. Every process computes the same due ``{schedule_id, minute}`` pairs and
races for them in :mod:`dagflow.dedup`; only the winner writes ``schedule_enqueued`` and
enqueues. Any number of schedulers may run at once, with no leader.

Catch-up after downtime. A process remembers, per schedule, up to which minute it has
looked. On start it begins from the schedule's last claimed minute (kept with the claims),
at most :data:`CATCH_UP_S` back, and fires only the *latest* due minute in that gap: one
catch-up run per schedule, not one per missed minute, and none for a schedule that never
ran before (a new schedule starts with the current minute). A process that stalls (a
suspended laptop) catches up the same way on its next tick. A schedule that is added or
edited while serving starts with the current minute.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from dagflow.cron import ONE_MINUTE, WallMinute, fires, floor_minute, latest_fire, wall_minute
from dagflow.dedup import Claims, MemoryClaims, RedisClaims
from dagflow.errors import DagflowError
from dagflow.events import isoformat, utc_now
from dagflow.jsonl import iter_records
from dagflow.scheduled import Firing, RunQueue, start_firing
from dagflow.schedules import Schedule, ScheduleDir, minute_key, parse_minute_key
from dagflow.settings import Settings
from dagflow.state import JsonlStateStore

logger = logging.getLogger("dagflow.scheduler")

#: How far back, in seconds, a starting scheduler makes up for a missed minute.
CATCH_UP_S = 3600
EXIT_OK, EXIT_RUN_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class Ticker:
    """Turns (schedules, claims, now) into the firings this process won.

    Args:
        schedules: The schedules directory (refreshed at each tick).
        claims: Where processes race for ``{schedule_id, minute}``.
        state: The state store that receives ``schedule_enqueued``.
        catch_up_s: How far back a start makes up for one missed minute.
        new_run_id: Makes run ids (tests make them predictable).
    """

    schedules: ScheduleDir
    claims: Claims
    state: JsonlStateStore
    catch_up_s: int = CATCH_UP_S
    new_run_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
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
        oldest = current - timedelta(seconds=self.catch_up_s)
        walls: dict[str, WallMinute] = {}
        seen: dict[str, tuple[Schedule, datetime]] = {}
        out: list[tuple[Schedule, datetime]] = []
        for schedule in enabled:
            prev = self._seen.get(schedule.id)
            if prev is not None and (prev[0] is schedule or prev[0] == schedule):
                after = prev[1]
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
            minute = latest_fire(schedule.expr, schedule.zone, max(after, oldest), current)
            if minute is not None:
                out.append((schedule, minute))
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
            )
            for (s, m), (_, key, run_id), ok in zip(due, tries, won, strict=True)
            if ok
        ]
        stamp = isoformat(utc_now())
        self.state.record_events(
            [f.state_event("schedule_enqueued", stamp, catch_up=f.catch_up) for f in firings]
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


def claims_for(settings: Settings, state: JsonlStateStore) -> Claims:
    """Redis claims on the broker's Redis; else in-process claims seeded from ``state``."""
    url = settings.broker_url
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisClaims.from_url(url)
    claims = MemoryClaims()
    claims.seed(iter_records(state.path))
    return claims


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
        return cls(_parse_time(start) if start else None, speed)

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


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return moment


def next_sleep(tick_s: float, to_next_minute_s: float) -> float:
    """Sleep one tick, but wake just after the minute turns, so firings are not late."""
    return max(0.0, min(tick_s, to_next_minute_s + 0.002))


def serve(
    ticker: Ticker,
    clock: Clock,
    tick_s: float,
    stop: threading.Event,
    enqueue: Callable[[Firing], None],
) -> None:
    """Tick until ``stop`` is set, handing each firing won to ``enqueue``."""
    while not stop.is_set():
        try:
            for firing in ticker.tick(clock.now()):
                enqueue(firing)
        except Exception:
            # A Redis outage must not end the scheduler: the next tick tries again.
            logger.exception("dagflow: scheduler tick failed")
        stop.wait(next_sleep(tick_s, clock.seconds_to_next_minute()))


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dagflow.scheduler",
        description="Run DAGs on cron schedules (exactly once per schedule and minute).",
        epilog=(
            "examples:\n"
            "  python -m dagflow.scheduler --dir schedules --once   # one tick, wait, exit\n"
            "  python -m dagflow.scheduler --dir schedules --serve  # until Ctrl+C\n"
            "  python -m dagflow.scheduler --once --now 2026-11-26T10:05:00Z\n"
            "exit codes: 0 ok, 1 a run failed, 2 invalid schedules, 130 interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one tick, run what is due, exit")
    mode.add_argument(
        "--serve", action="store_true", help="tick every SCHED_TICK_MS until a signal"
    )
    parser.add_argument("--dir", type=Path, default=settings.schedules_dir, help="schedules dir")
    parser.add_argument("--now", type=_parse_time, help="with --once: the time to tick at")
    parser.add_argument("--timeout", type=float, help="seconds to wait for each run at most")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    logging.getLogger("dagflow").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # memory:// has no host


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dagflow.scheduler`` and ``dagflow schedule``."""
    settings = Settings.from_env()
    args = _parser(settings).parse_args(argv)
    _setup_logging(args.verbose)
    if not args.dir.is_dir():
        print(f"{args.dir}: ScheduleError: schedules directory not found", file=sys.stderr)
        return EXIT_INVALID
    state = JsonlStateStore(settings.state_path)
    schedules = ScheduleDir(args.dir)
    schedules.refresh()
    if args.once and schedules.errors:
        for error in schedules.errors:
            print(error.one_line(), file=sys.stderr)
        return EXIT_INVALID
    try:
        return _run(args, settings, state, schedules)
    except DagflowError as exc:
        if args.verbose:
            raise
        print(exc.one_line(), file=sys.stderr)
        return EXIT_INVALID


def _run(
    args: argparse.Namespace, settings: Settings, state: JsonlStateStore, schedules: ScheduleDir
) -> int:
    from dagflow.runner import Runner

    ticker = Ticker(schedules, claims_for(settings, state), state)
    runner = Runner(settings)
    runner.start_embedded_worker(loglevel="WARNING" if args.verbose else "CRITICAL")
    _setup_logging(args.verbose)  # the embedded worker's Celery log setup replaced ours
    submit_lock = threading.Lock()

    def start(firing: Firing) -> Callable[[], bool]:
        with submit_lock:  # one submit at a time: Celery producers are not thread-safe
            handle = start_firing(runner, firing, state)

        def wait() -> bool:
            result = handle.wait(timeout=args.timeout)
            logger.info(
                "dagflow: run %s of %s: %s", result.run_id, firing.schedule_id, result.status
            )
            return result.ok

        return wait

    runs = RunQueue(start, settings.sched_max_parallel)
    abort = threading.Event()
    try:
        if args.once:
            clock = Clock(args.now) if args.now else Clock.from_env(os.environ)
            firings = ticker.tick(clock.now())
            for firing in firings:
                runs.put(firing)
            runs.join()
            print(
                f"{len(firings)} enqueued; {runs.succeeded} succeeded, {runs.failed} failed",
                file=sys.stderr,
            )
            return EXIT_RUN_FAILED if runs.failed else EXIT_OK
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            (abort if stop.is_set() else stop).set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        logger.info("dagflow: serving %s (%d schedules)", args.dir, len(schedules.schedules))
        serve(ticker, Clock.from_env(os.environ), settings.sched_tick_ms / 1000, stop, runs.put)
        logger.info("dagflow: stopping, %d runs queued, %d running", runs.waiting, runs.running)
        # With a broker, runs already sent finish on the workers: only wait for the queue.
        if not runs.join(abort, submitted_only=not runner.embedded):
            logger.warning("dagflow: second signal, leaving %d queued runs", runs.waiting)
            return EXIT_INTERRUPTED
        return EXIT_OK
    finally:
        runs.close()
        runner.close(wait=False)


if __name__ == "__main__":
    sys.exit(main())
