"""Runs on real Celery workers: each test runs on the embedded worker and on Redis workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dagflow.client.runner import Runner
from dagflow.dag.load import load_dag
from dagflow.events.jsonl import ReadStats
from tests.support.dags import make_dag, task

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def events_of(runner: Runner, run_id: str) -> list[dict[str, Any]]:
    """The events of one run, in log order."""
    return [e for e in runner.runtime.events.read() if e.get("run_id") == run_id]


def ran(trace_dir: Path) -> list[str]:
    path = trace_dir / "ran.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_seed_dag_passes_payload_downstream(runner: Runner) -> None:
    # Given the seed DAG, when it runs
    handle = runner.submit(load_dag(ROOT / "dags" / "weekly_ops_chain.yaml"))
    result = handle.wait(timeout=TIMEOUT)
    # Then all three tasks succeed, and report saw sweep's summary as sweep__summary
    assert (result.status, result.succeeded, result.failed) == ("success", 3, 0)
    outputs = handle.outputs()
    assert outputs["sweep"]["summary"] == "Prioritized 15 items"
    assert "- sweep: Prioritized 15 items" in outputs["report"]["report"]
    assert "report: Weekly report 2025-10-01 to 2025-10-07" in outputs["brief"]["brief"]
    assert outputs["brief"]["action_items"] == [
        "Bob to finish the release checklist",
        "Carol to book the retro room",
    ]


def test_diamond_runs_each_task_once_and_merges_both_parents(
    runner: Runner, tmp_path: Path
) -> None:
    d = {"dir": str(tmp_path)}
    dag = make_dag(
        [
            task("a", params={**d, "tag": "a", "x": 1}),
            task("b", deps=("a",), params={**d, "tag": "b"}),
            task("c", deps=("a",), params={**d, "tag": "c"}),
            task("d", deps=("b", "c"), params={**d, "tag": "d", "own": "kept"}),
        ]
    )
    handle = runner.submit(dag)
    assert handle.wait(timeout=TIMEOUT).status == "success"
    assert sorted(ran(tmp_path)) == ["a", "b", "c", "d"]
    got = handle.outputs()["d"]["params"]
    assert got["own"] == "kept"
    assert got["b__params"]["a__params"]["x"] == 1
    assert got["c__params"]["tag"] == "c"
    assert "a__params" not in got  # only direct parents are passed on


def test_wide_fan_out_and_fan_in(runner: Runner) -> None:
    width = 200
    mids = [task(f"m{i}", "test.value", deps=("root",), params={"value": i}) for i in range(width)]
    dag = make_dag([task("root"), *mids, task("sink", deps=tuple(f"m{i}" for i in range(width)))])
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert (result.status, result.succeeded) == ("success", width + 2)
    sink = handle.outputs()["sink"]["params"]
    assert {k: v for k, v in sink.items() if k.endswith("__result")} == {
        f"m{i}__result": i for i in range(width)
    }


def test_deep_chain(runner: Runner) -> None:
    depth = 50
    tasks = [task("n0", "test.value", params={"value": 0})]
    tasks += [task(f"n{i}", deps=(f"n{i - 1}",)) for i in range(1, depth)]
    handle = runner.submit(make_dag(tasks))
    result = handle.wait(timeout=TIMEOUT)
    assert (result.status, result.succeeded) == ("success", depth)
    assert handle.outputs()["n1"]["params"] == {"n0__result": 0}


def test_shared_parent_join_does_not_wait_for_unrelated_task(runner: Runner) -> None:
    # Given A->C, A->D, B->D where B is slow (celery#893's shape)
    dag = make_dag(
        [
            task("A", "test.sleep", params={"seconds": 0.05}),
            task("B", "test.sleep", params={"seconds": 1.5}),
            task("C", "test.sleep", deps=("A",), params={"seconds": 0.01}),
            task("D", "test.sleep", deps=("A", "B"), params={"seconds": 0.01}),
        ]
    )
    handle = runner.submit(dag)
    assert handle.wait(timeout=TIMEOUT).status == "success"
    out = handle.outputs()
    # Then C started before B finished, and D started only after both A and B finished
    assert out["C"]["start"] < out["B"]["end"]
    assert out["D"]["start"] >= max(out["A"]["end"], out["B"]["end"])
    starts = [e["task_id"] for e in events_of(runner, handle.run_id) if e["event"] == "task_start"]
    assert sorted(starts) == ["A", "B", "C", "D"]  # nothing ran twice


def test_flaky_task_retries_then_succeeds(runner: Runner, tmp_path: Path) -> None:
    params = {"dir": str(tmp_path), "key": "k", "failures": 2}
    handle = runner.submit(make_dag([task("flaky", "test.flaky", retries=2, params=params)]))
    result = handle.wait(timeout=TIMEOUT)
    assert result.status == "success"
    assert handle.outputs()["flaky"] == {"attempts": 3}
    events = events_of(runner, handle.run_id)
    retries = [e for e in events if e["event"] == "task_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["delay_s"] > 0 and "ConnectionError" in e["error"] for e in retries)
    assert [e["attempt"] for e in events if e["event"] == "task_start"] == [1, 2, 3]


def test_exhausted_retries_skip_downstream_but_not_independent_branch(runner: Runner) -> None:
    dag = make_dag(
        [
            task("task1", "test.fail", retries=2, params={"message": "disk full"}),
            task("after", deps=("task1",)),
            task("after2", deps=("after",)),
            task("other"),
            task("other2", deps=("other",)),
        ]
    )
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert (result.status, result.succeeded, result.failed, result.skipped) == ("failed", 2, 1, 2)
    events = events_of(runner, handle.run_id)
    fail = [e for e in events if e["event"] == "task_fail"]
    assert len(fail) == 1 and fail[0]["attempt"] == 3
    assert fail[0]["error"].startswith("RunnerError: Task 'task1' failed after 3 attempts")
    assert "ValueError: disk full" in fail[0]["error"]
    assert sorted(e["task_id"] for e in events if e["event"] == "task_skip") == ["after", "after2"]
    assert not any(e["event"] == "task_start" and e["task_id"].startswith("after") for e in events)
    done = [e for e in events if e["event"] == "dag_done"]
    assert done[0]["status"] == "failed" and done[0]["tasks_skipped"] == 2


def test_task_timeout_counts_as_failed_attempt(runner: Runner) -> None:
    dag = make_dag([task("slow", "test.sleep", timeout_s=0.5, params={"seconds": 5})])
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert result.status == "failed"
    fail = next(e for e in events_of(runner, handle.run_id) if e["event"] == "task_fail")
    assert "TaskTimeoutError: Task 'slow' exceeded timeout_s=0.5" in fail["error"]
    assert fail["duration_s"] < 2


def test_output_that_is_not_json_fails_the_task_clearly(runner: Runner) -> None:
    dag = make_dag([task("bad", "test.not_json", retries=3), task("next", deps=("bad",))])
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert (result.status, result.failed, result.skipped) == ("failed", 1, 1)
    fail = next(e for e in events_of(runner, handle.run_id) if e["event"] == "task_fail")
    assert "WorkflowOutputError" in fail["error"] and "not JSON-serializable" in fail["error"]
    assert fail["attempt"] == 1  # retrying cannot fix a return value


def test_event_log_content_for_one_run(runner: Runner) -> None:
    dag = make_dag(
        [task("a", "test.value", params={"value": 1}), task("b", deps=("a",))],
        name="events_dag",
        tenant="acme",
    )
    handle = runner.submit(dag)
    handle.wait(timeout=TIMEOUT)
    stats = ReadStats()
    events = [e for e in runner.runtime.events.read(stats) if e.get("run_id") == handle.run_id]
    # Every line of the log is a JSON object: none was torn by concurrent writers
    assert stats.skipped == 0 and stats.lines >= len(events)
    shape = [(e["event"], e.get("task_id")) for e in events]
    assert shape == [
        ("dag_start", None),
        ("task_start", "a"),
        ("task_ok", "a"),
        ("task_start", "b"),
        ("task_ok", "b"),
        ("dag_done", None),
    ]
    for e in events:
        assert (e["dag_name"], e["tenant_id"], e["run_id"]) == ("events_dag", "acme", handle.run_id)
        assert e["timestamp"].endswith("Z")
    assert events[0]["tasks"] == 2 and events[0]["edges"] == [["a", "b"]]
    ok = events[2]
    assert ok["workflow_ref"] == "test.value" and ok["attempt"] == 1 and ok["duration_s"] >= 0
    assert events[-1] == {
        **events[-1],
        "status": "success",
        "tasks": 2,
        "tasks_succeeded": 2,
        "tasks_failed": 0,
        "tasks_skipped": 0,
    }
