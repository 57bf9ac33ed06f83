"""The chaos analysis (tests/support/chaos_analysis.py) catches what it claims to catch.

The chaos test is only as good as its judge: each check is fed a small, hand-made record of
a run (events, spans, faults, worker logs) with one known defect, and must name it; the
same record without the defect must pass. No services: the analysis is pure.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.chaos import (
    DAG_SHAPE,
    ChaosConfig,
    Fault,
    Observations,
    Submission,
    WorkerLife,
    chaos_dag,
)
from tests.support.chaos_analysis import analyse

T0 = 1_800_000_000.0
LEASE, SWEEP = 3.0, 0.5
RUN = "r1"
DAG = "chaos_0001"


def _ev(at: float, event: str, task_id: str | None = None, **fields: Any) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(T0 + at, UTC).isoformat().replace("+00:00", "Z")
    record = {"timestamp": stamp, "event": event, "run_id": RUN, "dag_name": DAG}
    if task_id is not None:
        record["task_id"] = task_id
    return {**record, **fields}


def _expected() -> dict[str, Any]:
    values: dict[str, int] = {}
    out: dict[str, Any] = {}
    for i, (task_id, parents, _) in enumerate(DAG_SHAPE):
        values[task_id] = 100 + i + sum(values[p] for p in parents)
        out[task_id] = {"value": values[task_id], "parents": sorted(parents)}
    return out


def _clean_run() -> list[dict[str, Any]]:
    """Every task once on w1, 0.1 s each, one after the other; the run ends success."""
    events = [_ev(0, "dag_start")]
    for i, (task_id, _, _) in enumerate(DAG_SHAPE):
        at = 1 + i * 0.2
        events.append(_ev(at, "task_start", task_id, attempt=1, fence=1, worker="w1@h"))
        events.append(_ev(at + 0.1, "task_ok", task_id, attempt=1, fence=1, worker="w1@h"))
    events.append(_ev(7, "dag_done", status="success", duration_s=7.0))
    return events


def _observe(
    tmp_path: Path,
    events: list[dict[str, Any]],
    faults: list[Fault] = (),  # type: ignore[assignment]
    spans: list[str] = (),  # type: ignore[assignment]
    logs: dict[str, str] | None = None,
    outputs: dict[str, Any] | None = None,
    submission: Submission | None = None,
) -> Observations:
    spans_path = tmp_path / "spans.txt"
    spans_path.write_text("".join(line + "\n" for line in spans))
    lives = []
    for node in ("w1@h", "w2@h"):
        log = tmp_path / f"{node}.log"
        log.write_text((logs or {}).get(node, ""))
        lives.append(WorkerLife(node, log, T0 - 10, None))
    sub = submission or Submission(1, RUN, DAG, T0, _expected())
    return Observations(
        config=ChaosConfig(seed=7, lease_s=LEASE, sweep_s=SWEEP),
        started_at=T0,
        chaos_ended_at=T0 + 60,
        drained_at=T0 + 70,
        events=events,
        spans_path=spans_path,
        submissions=[sub],
        faults=list(faults),
        lives=lives,
        outputs={RUN: outputs if outputs is not None else dict(sub.expected)},
        not_ended={},
    )


def test_a_clean_run_passes_every_check(tmp_path: Path) -> None:
    report = analyse(_observe(tmp_path, _clean_run()))
    assert report.failures == []
    assert report.runs["succeeded"] == 1


def test_a_second_task_ok_and_a_wrong_output_are_named(tmp_path: Path) -> None:
    events = _clean_run()
    events.insert(5, _ev(1.5, "task_ok", "a0", attempt=1, fence=2, worker="w2@h"))
    outputs = {**_expected(), "end": {"value": 0, "parents": []}}
    report = analyse(_observe(tmp_path, events, outputs=outputs))
    assert report.failed("one task_ok per task") == [
        f"one task_ok per task: {DAG} {RUN}: {{'a0': 2}}"
    ]
    assert len(report.failed("outputs right")) == 1 and "end" in report.failed("outputs right")[0]


def _spans(task_id: str, fence: int, pid: int, start: float, last: float) -> list[str]:
    key = f"{RUN} {task_id} {fence} {pid}"
    return [f"start {key} {T0 + start}", f"tick {key} {T0 + last}"]


def test_two_live_executions_of_a_step_fail_unless_the_first_holder_was_frozen(
    tmp_path: Path,
) -> None:
    # Given fence 1 of c0 alive on w1 from 2 s to 9 s, and fence 2 started on w2 at 6 s
    events = _clean_run()
    events.append(_ev(6, "task_start", "c0", attempt=1, fence=2, worker="w2@h"))
    spans = _spans("c0", 1, 11, 2, 9) + _spans("c0", 2, 22, 6, 6.5)
    # Then without a fault that explains it, it is an overlap
    plain = analyse(_observe(tmp_path, events, spans=spans))
    assert len(plain.failed("no overlapping executions")) == 1
    # And a SIGSTOP of w1 for 4 s (past 2/3 of the lease) explains it; one of 1 s does not
    long_freeze = Fault("freeze", T0 + 2.5, "w1@h", until=T0 + 6.5)
    short_freeze = Fault("freeze", T0 + 2.5, "w1@h", until=T0 + 3.5)
    assert not analyse(_observe(tmp_path, events, [long_freeze], spans)).failed(
        "no overlapping executions"
    )
    assert analyse(_observe(tmp_path, events, [short_freeze], spans)).failed(
        "no overlapping executions"
    )


def test_a_step_moved_after_a_blip_fails_unless_its_holder_was_frozen_across_it(
    tmp_path: Path,
) -> None:
    # Given d0 started on w1 at 2 s, a CLIENT KILL at 4 s, and d0 started again on w2 at 6 s
    events = [e for e in _clean_run() if e.get("task_id") != "d0"]
    events.append(_ev(2, "task_start", "d0", attempt=1, fence=1, worker="w1@h"))
    events.append(_ev(6, "task_start", "d0", attempt=1, fence=2, worker="w2@h"))
    events.append(_ev(6.1, "task_ok", "d0", attempt=1, fence=2, worker="w2@h"))
    blip = Fault("client_kill", T0 + 4, "redis", until=T0 + 4)

    def moved(*more: Fault) -> list[str]:
        return analyse(_observe(tmp_path, events, [blip, *more])).failed(
            "a blip keeps steps with their holder"
        )

    # Then the blip alone took it, and so it did beside a freeze of another worker
    assert len(moved()) == 1
    assert len(moved(Fault("freeze", T0 + 3, "w2@h", until=T0 + 5))) == 1
    # But a freeze of its holder that began before the blip and outlasted the lease took it
    assert moved(Fault("freeze", T0 + 2.5, "w1@h", until=T0 + 7)) == []


def test_a_step_of_a_killed_worker_is_late_past_lease_plus_sweep_plus_slack(
    tmp_path: Path,
) -> None:
    # Given d0 started on w1 at 2 s, w1 killed at 3.15 s (between two of its other steps),
    # and d0 started again on w2 t s later
    def run(taken_over_after: float) -> list[str]:
        events = [e for e in _clean_run() if e.get("task_id") != "d0"]
        events.append(_ev(2, "task_start", "d0", attempt=1, fence=1, worker="w1@h"))
        again = 3.15 + taken_over_after
        events.append(_ev(again, "task_start", "d0", attempt=1, fence=2, worker="w2@h"))
        events.append(_ev(again + 0.1, "task_ok", "d0", attempt=1, fence=2, worker="w2@h"))
        kill = Fault("worker_kill", T0 + 3.15, "w1@h", until=T0 + 4)
        report = analyse(_observe(tmp_path, events, [kill]))
        assert [(r.kind, r.task_id) for r in report.recoveries] == [("worker_kill", "d0")]
        return report.failed("recovery within the bound")

    # Then 3.5 s is within lease + sweep (+ 5 s slack); 12 s is not
    assert run(3.5) == []
    assert len(run(12)) == 1


def test_a_retry_held_by_a_killed_worker_is_found_in_its_log_and_timed_from_due(
    tmp_path: Path,
) -> None:
    # Given flaky1 failing at 2 s with a 2 s retry that w1 logged as received, w1 killed at 3.15 s
    events = [e for e in _clean_run() if e.get("task_id") != "flaky1"]
    events.append(_ev(1.5, "task_start", "flaky1", attempt=1, fence=1, worker="w2@h"))
    events.append(_ev(2, "task_retry", "flaky1", attempt=1, fence=1, worker="w2@h", delay_s=2.0))
    events.append(_ev(20, "task_start", "flaky1", attempt=2, fence=2, worker="w2@h"))
    events.append(_ev(20.1, "task_ok", "flaky1", attempt=2, fence=2, worker="w2@h"))
    received = datetime.fromtimestamp(T0 + 2.1).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    log = f"[{received}: INFO/MainProcess] Task {DAG}:flaky1[abc-1] received\n"
    kill = Fault("worker_kill", T0 + 3.15, "w1@h", until=T0 + 4)
    report = analyse(_observe(tmp_path, events, [kill], logs={"w1@h": log}))
    # Then the held retry is measured from its due time (4 s) and found late (16 s > 8.5 s)
    held = [r for r in report.recoveries if r.what == "held retry"]
    assert [(r.task_id, r.seconds) for r in held] == [("flaky1", 16.0)]
    assert len(report.failed("recovery within the bound")) == 1
    assert len(report.failed("every retry by due + lease + sweep")) == 1
    # And a worker that did not log it is not taken for its holder
    report = analyse(_observe(tmp_path, events, [kill], logs={"w2@h": log}))
    assert [r for r in report.recoveries if r.what == "held retry"] == []


def test_a_worker_that_exited_by_itself_fails_the_run(tmp_path: Path) -> None:
    exit_ = Fault("worker_exit", T0 + 5, "w1@h", until=T0 + 5, detail="rc 1: AttributeError")
    report = analyse(_observe(tmp_path, _clean_run(), [exit_]))
    assert report.failed("no worker exited on its own") == [
        "no worker exited on its own: w1@h at +5.0 s: rc 1: AttributeError"
    ]


def _mapped_run() -> tuple[list[dict[str, Any]], Submission]:
    """Run 1 of the load, with its map (``list`` -> ``each[0..3]`` -> ``join``): every step
    once on w1, one after the other, with its ``map_expand`` and ``map_done`` lines."""
    _dag, expected, mapped = chaos_dag(1, Path("spans"), random.Random(0))
    assert {t: m.instances for t, m in mapped.items()} == {"each": 4}
    events = [_ev(0, "dag_start")]
    at = 1.0
    for task_id in expected:
        if task_id in mapped:
            continue
        events.append(_ev(at, "task_start", task_id, attempt=1, fence=1, worker="w1@h"))
        events.append(_ev(at + 0.1, "task_ok", task_id, attempt=1, fence=1, worker="w1@h"))
        if task_id == "list":
            events.append(_ev(at + 0.11, "map_expand", "each", instances=4))
        if task_id == "each[3]":
            events.append(_ev(at + 0.11, "map_done", "each", status="success"))
        at += 0.2
    events.append(_ev(at + 1, "dag_done", status="success", duration_s=at + 1))
    return events, Submission(1, RUN, DAG, T0, expected, None, mapped)


def test_a_clean_run_with_a_map_passes_every_check(tmp_path: Path) -> None:
    events, sub = _mapped_run()
    report = analyse(_observe(tmp_path, events, submission=sub))
    assert report.failures == []
    assert report.maps == {
        "mapped tasks": 1,
        "instances": 4,
        "instances taken by a fault": 0,
    }


def test_a_map_expanded_twice_or_to_the_wrong_size_is_named(tmp_path: Path) -> None:
    events, sub = _mapped_run()
    twice = [*events, _ev(9, "map_expand", "each", instances=4)]
    report = analyse(_observe(tmp_path, twice, submission=sub))
    assert report.failed("each map expands once") == [
        f"each map expands once: {DAG} {RUN}/each: map_expand instances [4, 4], want [4]"
    ]
    wrong = [{**e, "instances": 5} if e["event"] == "map_expand" else e for e in events]
    done_twice = [*wrong, _ev(9, "map_done", "each", status="success")]
    report = analyse(_observe(tmp_path, done_twice, submission=sub))
    assert len(report.failed("each map expands once")) == 2


def test_an_instance_missing_or_extra_is_named_once_per_task(tmp_path: Path) -> None:
    events, sub = _mapped_run()
    events = [e for e in events if not (e["event"] == "task_ok" and e["task_id"] == "each[2]")]
    events.append(_ev(9, "task_ok", "each[4]", attempt=1, fence=1, worker="w1@h"))
    events.append(_ev(9, "task_ok", "each", attempt=1, fence=1, worker="w1@h"))
    report = analyse(_observe(tmp_path, events, submission=sub))
    assert report.failed("one task_ok per task") == [
        f"one task_ok per task: {DAG} {RUN}: {{'each': 1, 'each[2]': 0, 'each[4]': 1}}"
    ]


def test_results_out_of_order_or_misrouted_are_wrong_outputs(tmp_path: Path) -> None:
    events, sub = _mapped_run()
    swapped = dict(sub.expected)
    swapped["join"] = {**swapped["join"], "indexes": [1, 0, 2, 3]}
    swapped["each[1]"] = {**swapped["each[1]"], "item": swapped["each[2]"]["item"]}
    report = analyse(_observe(tmp_path, events, outputs=swapped, submission=sub))
    assert report.failed("outputs right") == [
        f"outputs right: {DAG} {RUN}: 2 wrong, e.g. each[1] {swapped['each[1]']} != "
        f"{sub.expected['each[1]']}"
    ]


def test_a_missing_map_line_fails_even_where_a_fault_hit_its_worker(tmp_path: Path) -> None:
    # Given a run whose map_expand line is missing, and one whose map_done line is
    events, sub = _mapped_run()
    no_expand = [e for e in events if e["event"] != "map_expand"]
    no_done = [e for e in events if e["event"] != "map_done"]
    list_ok = next(e for e in events if e["event"] == "task_ok" and e["task_id"] == "list")
    ok_at = datetime.fromisoformat(list_ok["timestamp"]).timestamp() - T0
    # Then each fails
    report = analyse(_observe(tmp_path, no_expand, submission=sub))
    assert report.failed("each map expands once") == [
        f"each map expands once: {DAG} {RUN}/each: no map_expand after list's task_ok"
    ]
    report = analyse(_observe(tmp_path, no_done, submission=sub))
    assert report.failed("each map expands once") == [
        f"each map expands once: {DAG} {RUN}/each: no map_done after its last instance's task_ok"
    ]
    # And a kill of the worker that committed, just after its end, no longer excuses it: the
    # line is written in that commit
    holder = Fault("pool_kill", T0 + ok_at + 0.01, "w1@h", pid=11)
    report = analyse(_observe(tmp_path, no_expand, [holder], submission=sub))
    assert report.failed("each map expands once") == [
        f"each map expands once: {DAG} {RUN}/each: no map_expand after list's task_ok"
    ]
