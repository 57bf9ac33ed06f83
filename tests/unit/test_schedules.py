"""Schedule files: loading, one-line errors, reloading a directory, and the tick's due list."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dagflow.errors import ScheduleError
from dagflow.events.state_store import JsonlStateStore
from dagflow.scheduling.schedule_dir import ScheduleDir, load_schedule_dir
from dagflow.scheduling.schedules import load_schedule_file, minute_key, parse_minute_key
from dagflow.scheduling.ticker import Ticker
from dagflow.stores.minute_claims import MemoryMinuteClaims

ENTRY = """
- id: {id}
  cron: "{cron}"
  dag: dags/d.yaml
  tenant: acme
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "d.yaml").write_text("name: d\ntenant_id: t\ntasks: []\n")
    (tmp_path / "schedules").mkdir()
    return tmp_path


def write(root: Path, name: str, text: str) -> Path:
    path = root / "schedules" / name
    path.write_text(text)
    # Make every write visible to the (mtime, size, inode) check, even within one tick.
    stamp = path.stat().st_mtime_ns + len(text) * 1_000_000 + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    return path


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_seed_file_loads(root: Path) -> None:
    path = write(root, "w.yaml", ENTRY.format(id="w", cron="*/5 * * * *"))
    [schedule] = load_schedule_file(path, root)
    assert (schedule.id, schedule.enabled, schedule.timezone) == ("w", True, "UTC")


def test_single_entry_file(root: Path) -> None:
    path = write(root, "one.yml", "id: one\ncron: '0 9 * * *'\ndag: dags/d.yaml\ntenant: t\n")
    assert [s.id for s in load_schedule_file(path, root)] == ["one"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ENTRY.format(id="a", cron="*/5 * * 13 *"),
            "schedule 'a', field 'cron': ScheduleError: month field '13'",
        ),
        (
            ENTRY.format(id="a", cron="*"),
            "field 'cron': ScheduleError: expected 5 fields",
        ),
        (
            "- id: a\n  cron: '* * * * *'\n  dag: ../outside.yaml\n  tenant: t\n",
            "schedule 'a', field 'dag': ScheduleError: '../outside.yaml' resolves outside",
        ),
        (
            "- id: a\n  cron: '* * * * *'\n  dag: dags/missing.yaml\n  tenant: t\n",
            "field 'dag': ScheduleError: DAG file 'dags/missing.yaml' not found",
        ),
        (
            "- id: a\n  cron: '* * * * *'\n  dag: dags/d.yaml\n",
            "schedule 'a', field 'tenant': ScheduleError: required field is missing",
        ),
        (
            "- id: a\n  cron: '* * * * *'\n  dag: dags/d.yaml\n  tenant: t\n  timezone: Nowhere\n",
            "field 'timezone': ScheduleError: unknown IANA time zone 'Nowhere'",
        ),
        (
            ENTRY.format(id="a", cron="* * * * *") + ENTRY.format(id="a", cron="* * * * *"),
            "schedule 'a': ScheduleError: duplicate id in this file",
        ),
        ("- id: a\n  cron: [unclosed\n", "ScheduleError: malformed YAML"),
    ],
)
def test_bad_entries_get_one_line_errors(root: Path, text: str, expected: str) -> None:
    path = write(root, "bad.yaml", text)
    with pytest.raises(ScheduleError) as info:
        load_schedule_file(path, root)
    line = info.value.one_line()
    assert line.startswith(str(path))
    assert expected in line


def test_every_bad_entry_and_field_is_reported(root: Path) -> None:
    path = write(
        root,
        "bad.yaml",
        "- {id: a, cron: '61 * * * *', dag: dags/d.yaml, tenant_id: t}\n"
        "- {id: b, cron: '* * * * *', dag: dags/missing.yaml, tenant: t}\n"
        "- {id: c, cron: '* * * * *', dag: dags/d.yaml, tenant: t, enabled: maybe}\n",
    )
    with pytest.raises(ScheduleError) as info:
        load_schedule_file(path, root)
    assert [(e.task, e.field, e.message) for e in info.value.errors] == [
        ("a", "cron", "minute field '61' is invalid (use 0-59, with *, */n, a-b and lists)"),
        ("a", "tenant_id", "unknown key (did you mean 'tenant'?)"),
        ("c", "enabled", "expected true or false, got the string 'maybe'"),
    ]  # the dag paths are checked once every entry is valid


def test_duplicate_id_across_files_is_refused(root: Path) -> None:
    write(root, "a.yaml", ENTRY.format(id="x", cron="* * * * *"))
    write(root, "b.yaml", ENTRY.format(id="x", cron="0 * * * *"))
    with pytest.raises(ScheduleError, match="duplicate id"):
        load_schedule_dir(root / "schedules", root)


def test_minute_key_round_trips() -> None:
    key = minute_key(utc("2026-11-26 10:05:42"))
    assert key == "2026-11-26T10:05:00Z"
    assert parse_minute_key(key) == utc("2026-11-26 10:05")


def test_reload_adds_changes_removes_and_keeps_last_good(root: Path) -> None:
    # Given a directory with one good file
    directory = ScheduleDir(root / "schedules", root)
    path = write(root, "a.yaml", ENTRY.format(id="a", cron="*/5 * * * *"))
    assert directory.refresh()
    assert [s.cron for s in directory.schedules] == ["*/5 * * * *"]
    assert not directory.refresh()  # nothing changed: no reload

    # When the file is edited, the new version is used
    write(root, "a.yaml", ENTRY.format(id="a", cron="0 * * * *"))
    assert directory.refresh()
    assert [s.cron for s in directory.schedules] == ["0 * * * *"]

    # When it turns bad, the last good version stays and the error is reported
    write(root, "a.yaml", ENTRY.format(id="a", cron="99 * * * *"))
    directory.refresh()
    assert [s.cron for s in directory.schedules] == ["0 * * * *"]
    assert "minute field '99'" in directory.errors[0].one_line()

    # When a file is added and the first is removed
    write(root, "b.yml", ENTRY.format(id="b", cron="* * * * *"))
    path.unlink()
    directory.refresh()
    assert [s.id for s in directory.schedules] == ["b"]
    assert directory.errors == []


@pytest.fixture
def ticker(root: Path) -> Ticker:
    directory = ScheduleDir(root / "schedules", root)
    return Ticker(directory, MemoryMinuteClaims(), JsonlStateStore(root / "state.jsonl"))


def test_tick_enqueues_each_minute_once(root: Path, ticker: Ticker) -> None:
    write(root, "a.yaml", ENTRY.format(id="a", cron="*/5 * * * *"))
    write(root, "off.yaml", ENTRY.format(id="off", cron="* * * * *") + "  enabled: false\n")
    # Given the minute 10:05 and several ticks inside it
    first = ticker.tick(utc("2026-11-26 10:05:00.4"))
    again = ticker.tick(utc("2026-11-26 10:05:30"))
    later = ticker.tick(utc("2026-11-26 10:06:00"))
    # Then only 'a' fires, once; the disabled schedule never does
    assert [(f.schedule_id, f.scheduled_minute) for f in first] == [("a", "2026-11-26T10:05:00Z")]
    assert again == [] and later == []
    events = JsonlStateStore(root / "state.jsonl").last_runs()
    assert [e["event"] for e in events] == ["schedule_enqueued"]
    assert events[0]["run_id"] == first[0].run_id


def test_restart_same_minute_and_one_catch_up(root: Path) -> None:
    write(root, "a.yaml", ENTRY.format(id="a", cron="*/5 * * * *"))
    claims = MemoryMinuteClaims()
    state = JsonlStateStore(root / "state.jsonl")

    def fresh() -> Ticker:
        return Ticker(ScheduleDir(root / "schedules", root), claims, state)

    assert len(fresh().tick(utc("2026-11-26 10:05:10"))) == 1
    # Given a restart in the same minute: nothing again
    assert fresh().tick(utc("2026-11-26 10:05:50")) == []
    # Given 23 minutes of downtime (10:10, 10:15, 10:20, 10:25 missed)
    caught = fresh().tick(utc("2026-11-26 10:28:00"))
    # Then one catch-up run, for the latest missed minute only
    assert [(f.scheduled_minute, f.catch_up) for f in caught] == [("2026-11-26T10:25:00Z", True)]


def test_new_schedule_does_not_catch_up(root: Path, ticker: Ticker) -> None:
    write(root, "a.yaml", ENTRY.format(id="a", cron="0 * * * *"))
    assert ticker.tick(utc("2026-11-26 10:28:00")) == []


def test_edited_entry_restarts_from_the_current_minute(root: Path, ticker: Ticker) -> None:
    write(root, "a.yaml", ENTRY.format(id="a", cron="0 * * * *"))
    assert ticker.tick(utc("2026-11-26 10:05:00")) == []
    # When, within the same minute, the entry is edited to match it
    write(root, "a.yaml", ENTRY.format(id="a", cron="*/5 * * * *"))
    # Then the next tick picks the edit up and fires
    assert len(ticker.tick(utc("2026-11-26 10:05:02"))) == 1


def test_memory_claims_seed_from_state(root: Path) -> None:
    state = JsonlStateStore(root / "state.jsonl")
    state.record_event(
        {
            "event": "schedule_enqueued",
            "schedule_id": "a",
            "scheduled_minute": "2026-11-26T10:05:00Z",
        }
    )
    with (root / "state.jsonl").open("a") as handle:
        handle.write('{"torn": \n')
    claims = MemoryMinuteClaims()
    assert claims.seed(state.last_runs(100)) == 1
    assert state.last_stats.skipped == 1
    assert claims.claim_many([("a", "2026-11-26T10:05:00Z", "x")]) == [False]
