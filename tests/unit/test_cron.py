"""Cron parsing and firing tables, with time zones and daylight-saving jumps (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dagflow.scheduling.cron import CronSyntaxError, fires_at, floor_minute, latest_fire, parse_cron

NY = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def firings(cron: str, zone: ZoneInfo, start: datetime, minutes: int) -> list[datetime]:
    expr = parse_cron(cron)
    moments = (start + timedelta(minutes=i) for i in range(minutes))
    return [m for m in moments if fires_at(expr, zone, m)]


@pytest.mark.parametrize(
    ("cron", "moment", "expected"),
    [
        ("*/5 * * * *", "2026-11-26 10:05", True),
        ("*/5 * * * *", "2026-11-26 10:06", False),
        ("0 9 * * *", "2026-11-26 09:00", True),
        ("0 */2 * * *", "2026-11-26 09:00", False),
        ("0 */2 * * *", "2026-11-26 10:00", True),
        ("15-17 * * * *", "2026-11-26 10:16", True),
        ("1,30 * * * *", "2026-11-26 10:30", True),
        ("0 9 * * mon-fri", "2026-11-26 09:00", True),  # a Thursday
        ("0 9 * * sat,sun", "2026-11-26 09:00", False),
        ("0 9 * * 7", "2026-11-29 09:00", True),  # 7 is Sunday too
        ("0 9 * nov *", "2026-11-26 09:00", True),
        ("0 9 * jan-mar *", "2026-11-26 09:00", False),
        # both day fields restricted: either matches (standard cron)
        ("0 9 1 * thu", "2026-11-26 09:00", True),
        ("0 9 1 * fri", "2026-11-26 09:00", False),
        ("@daily", "2026-11-26 00:00", True),
    ],
)
def test_fires_at_utc(cron: str, moment: str, expected: bool) -> None:
    assert fires_at(parse_cron(cron), UTC, utc(moment)) is expected


@pytest.mark.parametrize(
    ("cron", "field"),
    [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * * foo *", "month"),
        ("* * * * 9", "day-of-week"),
        ("0 9 L * *", "day-of-month"),
        ("0 9 * * 5#2", "day-of-week"),
    ],
)
def test_invalid_cron_names_the_field(cron: str, field: str) -> None:
    with pytest.raises(CronSyntaxError) as info:
        parse_cron(cron)
    assert info.value.part == field
    assert field in str(info.value)


@pytest.mark.parametrize("cron", ["* * * *", "* * * * * *", "@reboot", ""])
def test_wrong_shape_is_refused(cron: str) -> None:
    with pytest.raises(CronSyntaxError):
        parse_cron(cron)


def test_timezone_shifts_the_wall_clock() -> None:
    # Given a 09:00 schedule in Paris (UTC+1 in November)
    # Then it fires at 08:00 UTC, not 09:00 UTC
    expr = parse_cron("0 9 * * *")
    paris = ZoneInfo("Europe/Paris")
    assert fires_at(expr, paris, utc("2026-11-26 08:00"))
    assert not fires_at(expr, paris, utc("2026-11-26 09:00"))


def test_skipped_hour_fires_once_right_after_the_jump() -> None:
    # Given New York springs forward on 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC)
    # When a 02:30 job is checked over the whole day
    got = firings("30 2 * * *", NY, utc("2026-03-08 00:00"), 24 * 60)
    # Then it fires once, at the first minute after the jump (03:00 EDT = 07:00 UTC)
    assert got == [utc("2026-03-08 07:00")]


def test_skipped_hour_does_not_double_hourly_jobs() -> None:
    # An "every hour at :30" job follows real time: the skipped 02:30 does not run extra.
    got = firings("30 * * * *", NY, utc("2026-03-08 05:00"), 4 * 60)
    assert len(got) == 4
    assert all(m.minute == 30 for m in got)


def test_repeated_hour_fires_once() -> None:
    # Given New York falls back on 2026-11-01: 01:00-02:00 happens twice
    got = firings("30 1 * * *", NY, utc("2026-11-01 00:00"), 24 * 60)
    # Then the 01:30 job fires once, on the first pass (05:30 UTC, EDT)
    assert got == [utc("2026-11-01 05:30")]


def test_repeated_hour_every_five_minutes_follows_real_time() -> None:
    got = firings("*/5 * * * *", NY, utc("2026-11-01 05:00"), 120)
    assert len(got) == 24  # both passes of 01:00-02:00 fire


def test_latest_fire_picks_only_the_most_recent_missed_minute() -> None:
    expr = parse_cron("*/5 * * * *")
    got = latest_fire(expr, UTC, utc("2026-11-26 09:00"), utc("2026-11-26 09:58"))
    assert got == utc("2026-11-26 09:55")
    assert latest_fire(expr, UTC, utc("2026-11-26 09:55"), utc("2026-11-26 09:59")) is None


def test_floor_minute_is_utc() -> None:
    moment = datetime(2026, 11, 26, 11, 5, 42, 123, tzinfo=ZoneInfo("Europe/Paris"))
    assert floor_minute(moment) == utc("2026-11-26 10:05")
