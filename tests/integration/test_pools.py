"""Pools on real workers: at most SIZE steps of a pool run at once, across every worker.

Each test owns a :class:`~tests.support.cluster.Cluster` (a private redis-server, short
leases) whose workers and client have ``DAGFLOW_POOLS`` set. Steps run ``test.sleep``,
which returns when it started and ended, so overlaps are read from the outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow import workflows
from dagflow.client.runner import Runner
from dagflow.settings import Settings
from tests.support.cluster import Cluster, count
from tests.support.dags import make_dag, task
from tests.support.processes import dagflow_cli, worker_env
from tests.support.waiting import wait_for, wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

POOLS = {"DAGFLOW_POOLS": "warehouse=2,single=1"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, extra_env=POOLS)
    try:
        yield c
    finally:
        c.close()


def sleeper(
    task_id: str, seconds: float, pool: str | None = "warehouse", **kw: Any
) -> dict[str, Any]:
    extra = {"pool": pool} if pool else {}
    return task(task_id, "test.sleep", params={"seconds": seconds}, **extra, **kw)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """Most spans open at one instant (an end before a start at the same instant)."""
    edges = sorted(
        [(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1])
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def spans(outputs: dict[str, Any], tasks: list[str] | None = None) -> list[tuple[float, float]]:
    return [(o["start"], o["end"]) for t, o in outputs.items() if tasks is None or t in tasks]


def starts(events: list[dict[str, Any]]) -> list[str]:
    return [e["task_id"] for e in events if e["event"] == "task_start"]


def test_a_pool_of_2_never_runs_more_than_2_steps_of_20_from_3_dags(cluster: Cluster) -> None:
    # Given two workers with 6 processes in all, and 3 DAGs (3 tenants) whose 20 pool steps
    # are all ready at once, plus a step outside the pool
    cluster.worker("w1", concurrency=3)
    cluster.worker("w2", concurrency=3)
    sizes = {"A": 7, "B": 7, "C": 6}
    handles = []
    for tenant, n in sizes.items():
        tasks = [sleeper(f"s{i}", 0.2) for i in range(n)]
        tasks.append(sleeper("free", 0.2, pool=None))
        handles.append(cluster.runner.submit(make_dag(tasks, f"pooled_{tenant}", tenant)))
    # When they run
    results = [h.wait(timeout=90) for h in handles]
    # Then every step ran, and never more than 2 pool steps at once
    assert [r.status for r in results] == ["success"] * 3
    pooled: list[tuple[float, float]] = []
    for handle, n in zip(handles, sizes.values(), strict=True):
        outputs = handle.outputs()
        pooled += spans(outputs, [f"s{i}" for i in range(n)])
    assert len(pooled) == 20
    assert max_overlap(pooled) <= 2
    # (and the limit was reached: the pool was the bottleneck, not the workers)
    assert max_overlap(pooled) == 2
    use = cluster.runner.runtime.pools.usage()["warehouse"]  # type: ignore[union-attr]
    assert (use.size, use.in_use, use.waiting) == (2, 0, 0)


def test_parked_steps_do_not_hold_worker_processes(cluster: Cluster) -> None:
    # Given one worker with 2 processes and a pool of 1, and a run whose 4 pool steps are
    # sent before a step outside the pool
    cluster.worker("w1", concurrency=2)
    tasks = [sleeper(f"p{i}", 1.0, pool="single") for i in range(4)]
    tasks.append(sleeper("free", 0.1, pool=None))
    handle = cluster.runner.submit(make_dag(tasks, "parked"))
    # When it runs
    assert handle.wait(timeout=60).status == "success"
    out = handle.outputs()
    # Then the free step ran while the first pool step still ran: the 3 waiting pool steps
    # were parked in the store, not holding the worker's second process
    first_end = min(out[f"p{i}"]["end"] for i in range(4))
    assert out["free"]["end"] < first_end
    assert max_overlap(spans(out, [f"p{i}" for i in range(4)])) == 1
    log = cluster.log("w1")
    assert "waits for a slot of pool 'single'" in log


def test_tenants_are_served_in_turn(cluster: Cluster) -> None:
    # Given a pool of 1, tenant A's run of 6 pool steps, parked behind A's first one
    cluster.worker("w1", concurrency=2)
    a = cluster.runner.submit(
        make_dag([sleeper(f"a{i}", 0.3, pool="single") for i in range(6)], "burst", "A")
    )
    pools = cluster.runner.runtime.pools
    assert pools is not None
    wait_for(lambda: pools.usage().get("single", None) and pools.usage()["single"].waiting == 5,
             20, "A's 5 steps parked")  # fmt: skip
    # When tenant B's run of 2 pool steps arrives after them
    b = cluster.runner.submit(
        make_dag([sleeper(f"b{i}", 0.3, pool="single") for i in range(2)], "small", "B")
    )
    assert a.wait(timeout=60).status == "success"
    assert b.wait(timeout=60).status == "success"
    # Then B's steps ran in turn with A's, not after all of them
    ran = sorted(
        [(o["start"], "A") for o in a.outputs().values()]
        + [(o["start"], "B") for o in b.outputs().values()]
    )
    assert [tenant for _, tenant in ran] == ["A", "A", "B", "A", "B", "A", "A", "A"]


def test_a_killed_holders_slot_comes_back(cluster: Cluster, tmp_path: Path) -> None:
    # Given a pool of 1 whose slot is held by a step running on worker w1, and two steps
    # of another run parked behind it (sent only once the holder runs: sent together,
    # either of them could take the slot first)
    cluster.worker("w1", concurrency=2)
    holder = [
        task("holder", "test.where_sleep", params={"dir": str(tmp_path), "seconds": 30, "again_seconds": 0.2},
             pool="single"),
    ]  # fmt: skip
    held = cluster.runner.submit(make_dag(holder, "killed"))
    wait_for_file(tmp_path / "where.txt")
    parked = [sleeper("next1", 0.2, pool="single"), sleeper("next2", 0.2, pool="single")]
    waiting = cluster.runner.submit(make_dag(parked, "parked"))
    pools = cluster.runner.runtime.pools
    assert pools is not None
    wait_for(lambda: pools.usage()["single"].waiting == 2, 20, "two steps parked")
    # When w1 is SIGKILLed with it, and another worker runs the sweeper
    cluster.kill("w1")
    cluster.worker("w2", concurrency=2)
    # Then the parked steps run once the holder's lease expires, and so does the holder
    # again (sent again by the sweeper; it waits its turn for the slot)
    for handle, succeeded in ((held, 1), (waiting, 2)):
        result = handle.wait(timeout=90)
        assert (result.status, result.succeeded) == ("success", succeeded)
    assert count(cluster.events(held.run_id), "task_start", "holder") == 2
    assert "freed 1 pool slots" in cluster.log("w2")
    assert max_overlap(spans(waiting.outputs())) == 1


def test_an_embedded_run_keeps_to_its_pool(tmp_path: Path) -> None:
    # Given the embedded worker with 4 threads and a pool of 1 (the in-memory twin)
    env = worker_env("", tmp_path / "events.jsonl", tmp_path / "state.jsonl", **POOLS)
    env.pop("DAGFLOW_BROKER_URL")
    env.pop("REDIS_URL", None)
    env["QUEUE_BACKEND"] = "memory"
    settings = Settings.from_env(env)
    workflows.load(settings.workflow_modules)
    runner = Runner(settings)
    runner.start_embedded_worker(loglevel="WARNING")
    try:
        tasks = [sleeper(f"p{i}", 0.1, pool="single") for i in range(5)]
        handle = runner.submit(make_dag(tasks, "embedded_pool"))
        assert handle.wait(timeout=60).status == "success"
        assert max_overlap(spans(handle.outputs())) == 1
    finally:
        runner.close()


def _dag_file(path: Path) -> Path:
    path.write_text(
        "name: pooled\ntenant_id: acme\ntasks:\n"
        "  - {id: load, workflow_ref: inbox_drive_sweep, pool: warehouse}\n"
    )
    return path


def test_a_pool_with_no_size_is_one_line_and_exit_2(tmp_path: Path) -> None:
    dag = _dag_file(tmp_path / "pooled.yaml")
    env = worker_env("", tmp_path / "e.jsonl", tmp_path / "s.jsonl", DAGFLOW_POOLS="api=2")
    env.pop("DAGFLOW_BROKER_URL")
    for command in ("plan", "validate", "run"):
        done = dagflow_cli(env, command, str(dag))
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines == [
            f"{dag}, task 'load', field 'pool': DagValidationError: pool 'warehouse' has no "
            "size in DAGFLOW_POOLS (known: api; set e.g. DAGFLOW_POOLS=warehouse=4)"
        ], command
    # With the size, plan shows the pool
    env["DAGFLOW_POOLS"] = "warehouse=4"
    done = dagflow_cli(env, "plan", str(dag))
    assert done.returncode == 0, done.stderr
    assert "pool: warehouse" in done.stdout


def test_a_malformed_dagflow_pools_is_one_line_and_exit_3(tmp_path: Path) -> None:
    dag = _dag_file(tmp_path / "pooled.yaml")
    env = worker_env("", tmp_path / "e.jsonl", tmp_path / "s.jsonl", DAGFLOW_POOLS="warehouse=0")
    env.pop("DAGFLOW_BROKER_URL")
    done = dagflow_cli(env, "plan", str(dag))
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1
    assert "DAGFLOW_POOLS: 'warehouse=0' is not pool=N" in done.stderr


def test_waiting_for_a_pool_shows_in_status(cluster: Cluster) -> None:
    cluster.worker("w1", concurrency=2)
    tasks = [sleeper(f"p{i}", 1.0, pool="single") for i in range(3)]
    handle = cluster.runner.submit(make_dag(tasks, "status_pool"))
    pools = cluster.runner.runtime.pools
    assert pools is not None
    wait_for(lambda: pools.usage().get("single") and pools.usage()["single"].waiting == 2,
             20, "two steps parked")  # fmt: skip
    done = dagflow_cli(cluster.env, "status", handle.run_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("waiting for pool 'single' (1/1 in use, 2 waiting)") == 2
    assert handle.wait(timeout=60).status == "success"
