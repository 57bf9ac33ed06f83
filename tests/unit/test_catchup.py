"""Catch-up policies: which missed minutes a scheduler makes up (pure: time is a parameter)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dagflow.errors import ScheduleError
from dagflow.events.state_store import JsonlStateStore
from dagflow.scheduling.backfill_window import backfill_minutes
from dagflow.scheduling.catchup import (
    DEFAULT_WINDOW_S,
    CatchupPolicy,
    catchup_minutes,
    fires_between,
    parse_window,
)
from dagflow.scheduling.cron import parse_cron
from dagflow.scheduling.schedule_dir import ScheduleDir
from dagflow.scheduling.schedules import Schedule, load_schedule_file, minute_key
from dagflow.scheduling.ticker import Ticker
from dagflow.stores.minute_claims import MemoryMinuteClaims

UTC_ZONE = ZoneInfo("UTC")
EVERY_5 = parse_cron("*/5 * * * *")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def keys(minutes: list[datetime]) -> list[str]:
    return [minute_key(m)[11:16] for m in minutes]


@pytest.mark.parametrize(
    ("policy", "window_s", "expected"),
    [
        # today's behaviour: the latest missed minute within one hour
        (CatchupPolicy.LATEST, DEFAULT_WINDOW_S, ["10:25"]),
        # every missed minute of the window, oldest first
        (CatchupPolicy.ALL, DEFAULT_WINDOW_S, ["10:10", "10:15", "10:20", "10:25"]),
        # nothing missed is made up
        (CatchupPolicy.NONE, DEFAULT_WINDOW_S, []),
        # the window bounds how far back: 10:28 - 10 min = 10:18
        (CatchupPolicy.ALL, 600, ["10:20", "10:25"]),
        (CatchupPolicy.LATEST, 120, []),
    ],
)
def test_policies_after_23_minutes_of_downtime(
    policy: CatchupPolicy, window_s: int, expected: list[str]
) -> None:
    # Given */5 last handled at 10:05 and now 10:28 (10:10 ... 10:25 missed)
    got = catchup_minutes(
        EVERY_5, UTC_ZONE, policy, window_s, utc("2026-11-26 10:05"), utc("2026-11-26 10:28")
    )
    assert keys(got) == expected


@pytest.mark.parametrize("policy", list(CatchupPolicy))
def test_the_current_minute_is_due_under_every_policy(policy: CatchupPolicy) -> None:
    got = catchup_minutes(
        EVERY_5, UTC_ZONE, policy, 3600, utc("2026-11-26 10:05"), utc("2026-11-26 10:30")
    )
    assert keys(got)[-1:] == ["10:30"]
    assert catchup_minutes(EVERY_5, UTC_ZONE, policy, 3600, utc("2026-11-26 10:30"),
                           utc("2026-11-26 10:30")) == []  # fmt: skip


def test_all_respects_the_window_over_a_long_outage() -> None:
    hourly = parse_cron("0 * * * *")
    got = catchup_minutes(
        hourly, UTC_ZONE, CatchupPolicy.ALL, 6 * 3600, utc("2026-11-20 00:00"),
        utc("2026-11-26 10:30"),
    )  # fmt: skip
    assert keys(got) == ["05:00", "06:00", "07:00", "08:00", "09:00", "10:00"]


def test_fires_between_follows_the_time_zone() -> None:
    daily_9 = parse_cron("0 9 * * *")
    got = fires_between(
        daily_9, ZoneInfo("Europe/Paris"), utc("2026-01-01 00:00"), utc("2026-01-03 23:59")
    )
    assert [minute_key(m) for m in got] == [
        "2026-01-01T08:00:00Z", "2026-01-02T08:00:00Z", "2026-01-03T08:00:00Z",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("6h", 21600), ("1d", 86400), (" 2h ", 7200)]
)
def test_parse_window(text: str, seconds: int) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["6", "6 hours", "0m", "25h", "2d", "-1h", "1.5h"])
def test_parse_window_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


def write(root: Path, extra: str) -> Path:
    (root / "dags").mkdir(exist_ok=True)
    (root / "dags" / "d.yaml").write_text("name: d\ntenant_id: t\ntasks: []\n")
    (root / "schedules").mkdir(exist_ok=True)
    path = root / "schedules" / "a.yaml"
    path.write_text(f'- id: a\n  cron: "*/5 * * * *"\n  dag: dags/d.yaml\n  tenant: acme\n{extra}')
    return path


def test_schedule_fields_default_to_todays_behaviour(tmp_path: Path) -> None:
    (schedule,) = load_schedule_file(write(tmp_path, ""), tmp_path)
    assert schedule.catchup_policy == CatchupPolicy.LATEST
    assert schedule.catchup_window_s is None  # the scheduler's default: one hour
    path = write(tmp_path, "  catchup: all\n  catchup_window: 6h\n")
    (schedule,) = load_schedule_file(path, tmp_path)
    assert (schedule.catchup_policy, schedule.catchup_window_s) == (CatchupPolicy.ALL, 21600)


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("  catchup: every\n", "field 'catchup': ScheduleError: expected one of latest, all, none"),
        ("  catchup_window: 2d\n", "field 'catchup_window': ScheduleError: must be between 1m"),
        ("  catchup_window: 6\n", "field 'catchup_window': ScheduleError: expected"),
    ],
)
def test_bad_catchup_fields_are_one_line(tmp_path: Path, extra: str, line: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        load_schedule_file(write(tmp_path, extra), tmp_path)
    assert line in caught.value.one_line()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", [("10:25", True)]),
        ("  catchup: all\n", [("10:10", True), ("10:15", True), ("10:20", True), ("10:25", True)]),
        ("  catchup: none\n", []),
    ],
)
def test_a_restarted_ticker_applies_the_policy(
    tmp_path: Path, extra: str, expected: list[tuple[str, bool]]
) -> None:
    write(tmp_path, extra)
    claims = MemoryMinuteClaims()
    state = JsonlStateStore(tmp_path / "state.jsonl")

    def fresh() -> Ticker:
        return Ticker(ScheduleDir(tmp_path / "schedules", tmp_path), claims, state)

    assert len(fresh().tick(utc("2026-11-26 10:05:10"))) == 1
    # Given 23 minutes of downtime, then a new scheduler
    caught = fresh().tick(utc("2026-11-26 10:28:00"))
    assert [(f.scheduled_minute[11:16], f.catch_up) for f in caught] == expected


def test_a_stalled_ticker_does_not_redo_what_another_claimed(tmp_path: Path) -> None:
    # Given two schedulers on the same claims, catch-up all over 6 hours, and claims that
    # have expired whenever they are looked at again (they live 2 h; the window is 6 h)
    write(tmp_path, "  catchup: all\n  catchup_window: 6h\n")
    claims = MemoryMinuteClaims(ttl_s=60, clock=itertools.count(step=1000).__next__)
    state = JsonlStateStore(tmp_path / "state.jsonl")
    sleeper = Ticker(ScheduleDir(tmp_path / "schedules", tmp_path), claims, state)
    awake = Ticker(ScheduleDir(tmp_path / "schedules", tmp_path), claims, state)
    assert len(sleeper.tick(utc("2026-11-26 10:00:10"))) == 1
    # When one stalls for 3 hours while the other claims every due minute
    minute = utc("2026-11-26 10:01")
    while minute <= utc("2026-11-26 13:00"):
        awake.tick(minute)
        minute += timedelta(minutes=1)
    # Then the sleeper, waking at 13:01, makes up nothing the other claimed
    assert sleeper.tick(utc("2026-11-26 13:01:00")) == []
    # And with nobody else running, a stall is made up minute by minute
    assert [f.scheduled_minute[11:16] for f in awake.tick(utc("2026-11-26 13:12"))] == [
        "13:05", "13:10",
    ]  # fmt: skip


def test_backfill_minutes_are_the_cron_times_from_included_to_excluded() -> None:
    hourly = Schedule(id="h", cron="0 * * * *", dag="d.yaml", tenant="t")
    now = utc("2026-01-10 00:00")
    got = backfill_minutes(hourly, utc("2026-01-01 00:00"), utc("2026-01-04 00:00"), now)
    assert len(got) == 72 and minute_key(got[0]) == "2026-01-01T00:00:00Z"
    assert minute_key(got[-1]) == "2026-01-03T23:00:00Z"
    # a start inside a minute begins at the next one
    got = backfill_minutes(hourly, utc("2026-01-01 00:00:30"), utc("2026-01-01 02:00"), now)
    assert [minute_key(m) for m in got] == ["2026-01-01T01:00:00Z"]


@pytest.mark.parametrize(
    ("cron", "start", "end", "message"),
    [
        ("0 * * * *", "2026-01-02", "2026-01-01", "--to must be after --from"),
        ("0 * * * *", "2026-01-01", "2026-01-11", "is after now"),
        ("0 * * * *", "2024-01-01", "2026-01-01", "longer than 366 days"),
        ("* * * * *", "2025-12-01", "2025-12-09", "more than 10000 cron times"),
    ],
)
def test_backfill_minutes_refuses(cron: str, start: str, end: str, message: str) -> None:
    schedule = Schedule(id="h", cron=cron, dag="d.yaml", tenant="t")
    with pytest.raises(ScheduleError, match=message):
        backfill_minutes(schedule, utc(start), utc(end), utc("2026-01-10 00:00"))
