"""The JSONL files many processes append to: no torn lines, corrupt lines skipped."""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from pathlib import Path

import pytest

from dagflow.events.jsonl import ReadStats, append_record, iter_records, read_tail, tail_offset
from dagflow.events.log import Event, JsonlEventLog, iter_events, load_events

WRITERS = 8
LINES = 400


def _writer(path: str, writer: int) -> None:
    log = JsonlEventLog(Path(path))
    padding = "x" * (writer * 700)  # lines of different sizes, some > PIPE_BUF
    for i in range(LINES):
        log.emit(
            Event(
                timestamp="2026-01-01T00:00:00.000000Z",
                event="task_ok",
                run_id=f"w{writer}",
                dag_name=padding,
                tenant_id="t",
                task_id=str(i),
            )
        )


def test_many_processes_appending_at_once_leave_no_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    lines = path.read_bytes().splitlines()
    assert len(lines) == WRITERS * LINES
    records = [json.loads(line) for line in lines]  # raises on any torn line
    for writer in range(WRITERS):
        ids = [r["task_id"] for r in records if r["run_id"] == f"w{writer}"]
        assert ids == [str(i) for i in range(LINES)]  # each writer's lines in its order


def test_corrupt_and_torn_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    append_record(path, {"event": "a"})
    with path.open("ab") as handle:
        handle.write(b'{"event": "torn\n[1, 2]\n\xff\xfe\n\n')
    append_record(path, {"event": "b"})
    stats = ReadStats()
    assert [r["event"] for r in iter_records(path, stats)] == ["a", "b"]
    assert (stats.lines, stats.skipped) == (5, 3)


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert list(iter_records(tmp_path / "none.jsonl")) == []


def test_unwritable_log_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = JsonlEventLog(blocker / "events.jsonl")  # a folder that cannot exist
    event = Event(timestamp="t", event="dag_start", run_id="r", dag_name="d", tenant_id="t")
    assert log.emit(event) is False


def test_event_log_follows_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = JsonlEventLog(path)
    event = Event(timestamp="t", event="dag_start", run_id="r", dag_name="d", tenant_id="t")
    assert log.emit(event)
    path.rename(tmp_path / "events.jsonl.1")  # logrotate moves the file away
    assert log.emit(event)
    assert len(path.read_text().splitlines()) == 1
    assert len((tmp_path / "events.jsonl.1").read_text().splitlines()) == 1


def test_read_tail_skips_and_counts_corrupt_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = [{"event": "task_ok", "n": i} for i in range(5)]
    lines = [json.dumps(record) for record in good]
    lines.insert(2, "{not json")
    lines.insert(4, "[1, 2]")
    path.write_text("\n".join(lines) + '\n{"timestamp": "2026-11-2', encoding="utf-8")
    stats = ReadStats()

    records = read_tail(path, 5000, stats)

    assert records == good
    assert (stats.lines, stats.skipped) == (8, 3)


def test_read_tail_keeps_the_newest_and_missing_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(100)), encoding="utf-8")

    assert read_tail(path, 3) == [{"n": 97}, {"n": 98}, {"n": 99}]
    assert read_tail(path, 0) == []
    assert len(read_tail(path, 1000)) == 100
    assert read_tail(tmp_path / "missing.jsonl", 10) == []


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_tail_read_matches_a_full_read(tmp_path: Path, block: int) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\nbad\n\n{"a":2}\n{"a":3}\n[4]\n{"a":5}\n{"a":6')
    for limit in range(0, 9):
        expected = list(deque(iter_records(path), maxlen=limit))
        assert read_tail(path, limit) == expected, limit
        offset = tail_offset(path, limit, block=block)
        assert offset == tail_offset(path, limit), (limit, block)


def test_load_events_and_iter_events_read_the_event_log(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(10)) + "torn", "utf-8")
    stats = ReadStats()

    assert load_events(path, limit=2) == [{"n": 8}, {"n": 9}]
    assert [e["n"] for e in iter_events(str(path), stats)] == list(range(10))
    assert (stats.lines, stats.skipped) == (11, 1)
    assert load_events(tmp_path / "missing.jsonl") == []
