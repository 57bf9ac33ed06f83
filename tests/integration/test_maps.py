"""Dynamic fan-out end to end: ``map`` on Redis workers and on the embedded worker, and
worker deaths around the expansion that lose and double nothing."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dagflow.client.runner import Runner
from dagflow.client.status import RunStatus
from dagflow.dag.load import Dag
from dagflow.stores import RunStore
from tests.support.cluster import LEASE_S, SWEEP_S, Cluster, count
from tests.support.dags import make_dag, task
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
TIMEOUT = 150


@pytest.fixture(params=["embedded", "redis"])
def runner(request: pytest.FixtureRequest) -> Runner:
    """Each test runs on the embedded worker and on the session's Redis worker."""
    return request.getfixturevalue(f"{request.param}_runner")  # type: ignore[no-any-return]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def map_dag(
    n: int,
    *,
    name: str,
    trace: Path | None = None,
    seconds: float = 0.0,
    most: int | None = None,
    queue: str | None = None,
    fail_items: list[str] | None = None,
    fail_while: Path | None = None,
) -> Dag:
    """list_files (n items) -> process[*] (test.map_item) -> merge (test.collect)."""
    item_params: dict[str, Any] = {"seconds": seconds}
    collect_params: dict[str, Any] = {}
    if trace is not None:
        item_params["dir"] = collect_params["dir"] = str(trace)
    if fail_items:
        item_params["fail_items"] = fail_items
    if fail_while is not None:
        item_params["fail_while"] = str(fail_while)
    process: dict[str, Any] = {"map": "list_files.files", "params": item_params}
    if most is not None:
        process["max_parallel"] = most
    if queue is not None:
        process["queue"] = queue
    return make_dag(
        [
            task("list_files", "test.list", params={"n": n}),
            task("process", "test.map_item", ("list_files",), **process),
            task("merge", "test.collect", ("process",), params=collect_params),
        ],
        name=name,
    )


def spans(trace: Path) -> dict[str, list[tuple[str, float]]]:
    """Each instance's start/end lines from ``map.txt``: ``{task_id: [(kind, t), ...]}``."""
    found: dict[str, list[tuple[str, float]]] = {}
    path = trace / "map.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, task_id, _fence, _pid, when = line.split()
        found.setdefault(task_id, []).append((kind, float(when)))
    return found


def most_at_once(trace: Path) -> int:
    """The most instances that were between their start and end at the same time."""
    marks = []
    for lines in spans(trace).values():
        starts = [t for kind, t in lines if kind == "start"]
        ends = [t for kind, t in lines if kind == "end"]
        marks += [(t, 1) for t in starts] + [(t, -1) for t in ends]
    running = peak = 0
    for _, delta in sorted(marks, key=lambda m: (m[0], m[1])):
        running += delta
        peak = max(peak, running)
    return peak


def state_of(store: RunStore, run_id: str, task_id: str) -> str | None:
    snap = store.snapshot(run_id, with_states=True)
    return (snap.states or {}).get(task_id) if snap else None


def merged(runner: Runner, run_id: str) -> dict[str, Any]:
    """merge's output (test.collect: ``n`` and the ``results`` it was given)."""
    return json.loads(runner.runtime.store.outputs(run_id, ["merge"])["merge"])  # type: ignore[no-any-return]


def test_a_map_of_1000_items_runs_each_once_and_joins_once(runner: Runner) -> None:
    # Given a DAG that maps over the 1,000 files its first task lists
    dag = map_dag(1000, name="map_1000")
    # When it runs
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    # Then every instance ran once, merge ran once with every output in item order
    assert result.status == "success", result
    out = merged(runner, handle.run_id)
    assert out["n"] == 1000
    assert out["results"] == [{"item": f"f{i}", "index": i} for i in range(1000)]
    events = [e for e in runner.runtime.events.read() if e.get("run_id") == handle.run_id]
    oks = Counter(e["task_id"] for e in events if e["event"] == "task_ok")
    assert {f"process[{i}]" for i in range(1000)} <= set(oks)
    assert set(oks.values()) == {1}
    assert [e["instances"] for e in events if e["event"] == "map_expand"] == [1000]
    assert [e["status"] for e in events if e["event"] == "map_done"] == ["success"]
    assert count(events, "dag_done") == 1
    # 1 + 1,000 instances + the mapped task + merge
    assert result.succeeded == 1003


def test_an_empty_list_gives_its_children_no_results(runner: Runner) -> None:
    handle = runner.submit(map_dag(0, name="map_empty"))
    result = handle.wait(timeout=TIMEOUT)
    assert result.status == "success"
    assert merged(runner, handle.run_id) == {"n": 0, "results": []}


def test_a_failed_instance_fails_the_run_and_shows_in_status(
    runner: Runner, tmp_path: Path
) -> None:
    # Given an instance whose item is bad (no retries)
    handle = runner.submit(map_dag(3, name="map_fail", fail_items=["f1"]))
    result = handle.wait(timeout=TIMEOUT)
    # Then the mapped task fails, merge is skipped and the run is failed
    assert result.status == "failed"
    states = {t.task_id: t for t in runner.runtime.store.tasks(handle.run_id)}
    assert states["process[1]"].state == "failed"
    assert states["process"].state == "failed" and states["merge"].state == "skipped"
    assert "1 of 3 instances failed" in (states["process"].last.error or "")
    snapshot = runner.runtime.store.snapshot(handle.run_id)
    assert snapshot is not None
    status = RunStatus.from_store(snapshot, list(states.values()))
    assert "process: 2 ok, 1 failed of 3" in status.map_lines()


def test_retry_runs_only_the_failed_instances(runner: Runner, tmp_path: Path) -> None:
    # Given a run where two of five instances failed while a flag file existed
    flag = tmp_path / "broken"
    flag.write_text("x")
    trace = tmp_path / "trace"
    trace.mkdir()
    dag = map_dag(
        5, name="map_retry", trace=trace, fail_items=["f1", "f3"], fail_while=flag, most=2
    )
    handle = runner.submit(dag)
    assert handle.wait(timeout=TIMEOUT).status == "failed"
    (trace / "map.txt").unlink()
    flag.unlink()
    # When it is retried
    retry = handle.retry()
    retry_id = retry.run_id
    result = retry.wait(timeout=TIMEOUT)
    # Then only the two failed instances ran again, and merge got all five in order
    assert result.status == "success", result
    assert sorted(spans(trace)) == ["process[1]", "process[3]"]
    out = merged(runner, retry_id)
    assert [r["index"] for r in out["results"]] == list(range(5))
    events = [e for e in runner.runtime.events.read() if e.get("run_id") == retry_id]
    reused = {e["task_id"] for e in events if e["event"] == "task_reused"}
    assert reused == {"list_files", "process[0]", "process[2]", "process[4]"}


def test_an_unusable_list_fails_the_mapped_task_at_once(runner: Runner) -> None:
    dag = make_dag(
        [
            task("list_files", "test.list", params={"items": "not-a-list"}),
            task("process", "test.map_item", ("list_files",), map="list_files.files"),
        ],
        name="map_bad_list",
    )
    handle = runner.submit(dag)
    result = handle.wait(timeout=TIMEOUT)
    assert result.status == "failed"
    events = [e for e in runner.runtime.events.read() if e.get("run_id") == handle.run_id]
    done = [e for e in events if e["event"] == "map_done"]
    assert len(done) == 1 and done[0]["status"] == "failed"
    assert "Task 'process' maps over list_files.files" in done[0]["error"]
    assert "holds str, not a list" in done[0]["error"]
    assert count(events, "task_start", "process") == 0


def test_max_parallel_caps_instances_across_workers(cluster: Cluster, tmp_path: Path) -> None:
    # Given two workers with two processes each, and a map of 10 capped at 2 at once
    cluster.worker("a", concurrency=2)
    cluster.worker("b", concurrency=2)
    dag = map_dag(10, name="map_capped", trace=tmp_path, seconds=0.3, most=2)
    # When it runs
    handle = cluster.runner.submit(dag)
    result = handle.wait(timeout=60)
    # Then all ten ran, never more than two at once
    assert result.status == "success"
    assert len(spans(tmp_path)) == 10
    assert most_at_once(tmp_path) == 2


def test_a_worker_killed_right_after_the_parents_commit_loses_no_instance(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given the map parent on worker a, its instances on queue 'inst' that nobody consumes yet
    cluster.worker("a", extra_args=["-Q", "celery"])
    dag = map_dag(20, name="map_kill_commit", trace=tmp_path, queue="inst")
    handle = cluster.runner.submit(dag)
    store = cluster.runner.runtime.store
    wait_for(lambda: state_of(store, handle.run_id, "process") == "mapped", 20, "expansion")
    # When worker a dies and the instance messages it sent are lost with it
    cluster.kill("a")
    client = redis.Redis.from_url(cluster.server.url(0))
    client.delete("inst")
    # Then a new worker gets every instance from the outbox through the sweeper
    cluster.worker("b", concurrency=2, extra_args=["-Q", "celery,inst"])
    result = handle.wait(timeout=LEASE_S * 4 + SWEEP_S + 30)
    assert result.status == "success"
    out = merged(cluster.runner, handle.run_id)
    assert [r["index"] for r in out["results"]] == list(range(20))
    assert sorted(spans(tmp_path)) == sorted(f"process[{i}]" for i in range(20))
    assert (tmp_path / "collect.txt").read_text().count("\n") == 1
    events = cluster.events(handle.run_id)
    # (map_expand is written in the parent's commit, before the worker that made it was
    # killed: exactly one, neither lost with it nor written twice)
    assert count(events, "map_expand") == 1
    assert all(count(events, "task_ok", f"process[{i}]") == 1 for i in range(20))


def test_a_worker_killed_mid_instance_loses_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given 6 one-second instances, two at a time on worker a
    cluster.worker("a", concurrency=2)
    dag = map_dag(6, name="map_kill_mid", trace=tmp_path, seconds=1.0)
    handle = cluster.runner.submit(dag)
    wait_for(lambda: len(spans(tmp_path)) >= 2, 20, "instances started")
    # When worker a dies mid-instance and worker b takes over
    cluster.kill("a")
    killed = time.monotonic()
    cluster.worker("b", concurrency=2)
    result = handle.wait(timeout=60)
    # Then every instance ended once, merge ran once, outputs complete and in order
    assert result.status == "success"
    assert time.monotonic() - killed < 60
    out = merged(cluster.runner, handle.run_id)
    assert [r["index"] for r in out["results"]] == list(range(6))
    ended = Counter(
        task_id for task_id, lines in spans(tmp_path).items() for k, _ in lines if k == "end"
    )
    assert sorted(ended) == sorted(f"process[{i}]" for i in range(6))
    assert (tmp_path / "collect.txt").read_text().count("\n") == 1
    events = cluster.events(handle.run_id)
    assert all(count(events, "task_ok", f"process[{i}]") == 1 for i in range(6))
    assert count(events, "dag_done") == 1
