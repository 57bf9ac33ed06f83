"""Outputs by reference on real workers: a 50 MB output from parent to child without Redis
growing, on a folder and on a real S3 endpoint; gone after the run expires; a worker killed
mid-write; the caps; a missing object; a retry that reuses a referenced output; a map over
a referenced list."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.execution.outputs import REF_KEY
from dagflow.stores.output_store import exists
from tests.support.cluster import Cluster
from tests.support.dags import make_dag, task
from tests.support.moto import MotoServer
from tests.support.waiting import wait_for
from tests.support.workflows import _digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
TIMEOUT = 120


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path / "moto.log")
    try:
        yield server
    finally:
        server.stop()


def store_env(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """DAGFLOW_OUTPUT_STORE (and the S3 endpoint's variables) for a store of ``kind``."""
    if kind == "file":
        return {"DAGFLOW_OUTPUT_STORE": (tmp_path / "outputs").as_uri()}
    server: MotoServer = request.getfixturevalue("moto")
    patch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for key, value in server.env.items():  # this process reads the objects too
        patch.setenv(key, value)
    return {"DAGFLOW_OUTPUT_STORE": server.make_bucket("dagflow-outputs") + "/runs", **server.env}


def used_memory(c: Cluster) -> int:
    return int(c.server.client(0).info("memory")["used_memory"])


def big_dag(mb: float, name: str, **big: Any) -> Any:
    return make_dag(
        [
            task("big", "test.big", params={"mb": mb, **big}),
            task("use", "test.digest", ("big",), params={"key": "big__rows"}),
        ],
        name=name,
    )


def expected_rows(mb: float, tag: str = "x") -> list[str]:
    return [f"{i:08d}" + tag * (1000 - 8) for i in range(int(mb * 1000))]


def ref_of(c: Cluster, run_id: str, task_id: str) -> dict[str, Any]:
    raw = c.runner.runtime.store.outputs(run_id, [task_id])[task_id]
    value: dict[str, Any] = json.loads(raw)
    assert REF_KEY in value, raw[:200]
    return value


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_50_mb_output_passes_to_its_child_and_redis_barely_grows(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Given workers with an output store and a run TTL of one minute
    ttl = 60
    c = Cluster(
        tmp_path, extra_env={**store_env(kind, tmp_path, request), "DAGFLOW_RUN_TTL_S": str(ttl)}
    )
    try:
        c.worker("a", concurrency=1)
        before = used_memory(c)
        # When a task returns 50 MB of JSON to its child
        handle = c.runner.submit(big_dag(50, f"big_{kind}"))
        result = handle.wait(timeout=TIMEOUT)
        # Then the child saw the whole value, and Redis grew by less than 1 MB
        assert result.status == "success", result
        grown = used_memory(c) - before
        rows = expected_rows(50)
        assert handle.outputs(["use"])["use"] == {"n": len(rows), "sha256": _digest(rows)}
        assert grown < 1_000_000, grown
        ref = ref_of(c, handle.run_id, "big")
        assert ref["bytes"] > 50_000_000 and ref[REF_KEY].endswith(f"/{handle.run_id}/big/1.json")
        assert exists(ref[REF_KEY])
        # `dagflow outputs` (the handle) resolves the reference
        assert handle.outputs(["big"])["big"]["rows"][:2] == rows[:2]
        if kind == "s3":
            return  # expiry is checked on the folder store (and by the contract test on S3)
        # And once the run's state expires, a sweep deletes the object
        client = c.server.client(0)
        wait_for(
            lambda: not client.exists(f"dagflow:run:{{{handle.run_id}}}:meta"),
            timeout=ttl + 30,
            what="the run's state to expire",
        )
        folder = tmp_path / "outputs" / handle.run_id
        wait_for(lambda: not folder.exists(), timeout=30, what="the run's folder to be swept")
        assert not exists(ref[REF_KEY])
        wait_for(
            lambda: client.zscore("dagflow:outputs", handle.run_id) is None,
            timeout=10,
            what="the index entry to go",
        )
    finally:
        c.close()


def test_a_worker_killed_mid_write_leaves_no_half_object_a_child_reads(tmp_path: Path) -> None:
    # Given an output store on a folder and a worker writing a 100 MB output
    outputs = tmp_path / "outputs"
    c = Cluster(tmp_path, extra_env={"DAGFLOW_OUTPUT_STORE": outputs.as_uri()})
    try:
        for attempt in range(3):  # the write lasts tens of ms: catch it, else try once more
            c.worker(f"a{attempt}", concurrency=1)
            handle = c.runner.submit(big_dag(100, "killed_mid_write", tag=str(attempt)))
            folder = outputs / handle.run_id / "big"
            deadline = time.monotonic() + 60
            caught = None
            while time.monotonic() < deadline and caught is None:
                try:
                    names = os.listdir(folder)
                except FileNotFoundError:
                    names = []
                tmp = [n for n in names if n.endswith(".tmp")]
                if tmp:
                    # When the worker is killed while the object is being written
                    os.killpg(c.workers[f"a{attempt}"].pid, signal.SIGKILL)
                    c.workers.pop(f"a{attempt}").wait(10)
                    caught = tmp[0]
                elif "1.json" in names:
                    break
                else:
                    time.sleep(0.0005)
            if caught is not None and not (folder / "1.json").exists():
                break
            handle.wait(timeout=TIMEOUT)
        else:
            pytest.skip("could not kill the worker during the write in 3 tries")
        half = folder / caught
        assert half.exists() and half.stat().st_size < 100_000_000
        # Then another worker runs the step again (fence 2) and the child reads its object
        c.worker("b", concurrency=1)
        result = handle.wait(timeout=TIMEOUT)
        assert result.status == "success", result
        rows = expected_rows(100, str(attempt))
        assert handle.outputs(["use"])["use"] == {"n": len(rows), "sha256": _digest(rows)}
        ref = ref_of(c, handle.run_id, "big")
        assert ref[REF_KEY].endswith("/big/2.json")
        assert not (folder / "1.json").exists()  # the killed attempt never made an object
    finally:
        c.close()


def test_over_the_cap_and_without_a_store_the_task_fails_at_once(tmp_path: Path) -> None:
    # Given workers with no output store and a 1 MB cap
    c = Cluster(tmp_path, extra_env={"DAGFLOW_OUTPUT_MAX": "1000000"})
    try:
        c.worker("a")
        for mb, setting in ((2, "DAGFLOW_OUTPUT_MAX (1000000)"), (0.5, "DAGFLOW_OUTPUT_STORE")):
            dag = make_dag([task("big", "test.big", params={"mb": mb}, retries=2)], name="cap")
            handle = c.runner.submit(dag)
            result = handle.wait(timeout=TIMEOUT)
            # Then it failed after one attempt, with one line naming the setting
            assert result.status == "failed"
            (info,) = handle.status().tasks
            assert info.attempts == 1, info
            assert info.last.error is not None and "\n" not in info.last.error
            assert "OutputTooLargeError" in info.last.error and setting in info.last.error
    finally:
        c.close()


def test_a_missing_object_fails_the_child_naming_run_task_and_url(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    c = Cluster(tmp_path, extra_env={"DAGFLOW_OUTPUT_STORE": outputs.as_uri()})
    try:
        c.worker("a", concurrency=2)
        # Given a child that waits for a slow second parent after the big one ended
        dag = make_dag(
            [
                task("big", "test.big", params={"mb": 1}),
                task("slow", "test.sleep", params={"seconds": 3}),
                task("use", "test.digest", ("big", "slow"), params={"key": "big__rows"}, retries=2),
            ],
            name="missing_object",
        )
        handle = c.runner.submit(dag)
        folder = outputs / handle.run_id / "big"
        wait_for(lambda: (folder / "1.json").exists(), timeout=30, what="big's object")
        wait_for(lambda: handle.snapshot(True).states["big"] == "ok", timeout=30, what="big ok")  # type: ignore[union-attr]
        # When its object is deleted before the child reads it
        (folder / "1.json").unlink()
        result = handle.wait(timeout=TIMEOUT)
        # Then the child fails at once with one line naming run, task and URL
        assert result.status == "failed"
        use = next(t for t in handle.status().tasks if t.task_id == "use")
        assert use.attempts == 1
        error = use.last.error or ""
        assert "OutputMissingError" in error and handle.run_id in error and "'big'" in error
        assert (folder / "1.json").as_uri() in error and "\n" not in error
    finally:
        c.close()


def test_a_retry_copies_the_objects_it_reuses(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    c = Cluster(tmp_path, extra_env={"DAGFLOW_OUTPUT_STORE": outputs.as_uri()})
    try:
        c.worker("a")
        gate = tmp_path / "fail-while"
        gate.write_text("x")
        dag = make_dag(
            [
                task("big", "test.big", params={"mb": 1}),
                task("use", "test.flaky_gate", ("big",), params={"gate": str(gate)}),
            ],
            name="retry_reuse",
        )
        first = c.runner.submit(dag)
        assert first.wait(timeout=TIMEOUT).status == "failed"
        old = ref_of(c, first.run_id, "big")
        # When the run is retried (big is reused) and the old run's objects then vanish
        gate.unlink()
        second = first.retry()
        assert second.wait(timeout=TIMEOUT).status == "success"
        new = ref_of(c, second.run_id, "big")
        assert new[REF_KEY] == (outputs / second.run_id / "big" / "reused.json").as_uri()
        c.runner.runtime.outputs.store.delete_run(first.run_id)  # type: ignore[union-attr]
        assert not exists(old[REF_KEY])
        # Then the retry's reused output still resolves: it owns a copy
        rows = expected_rows(1)
        assert second.outputs(["big"])["big"]["rows"] == rows
        assert second.outputs(["use"])["use"]["n"] == len(rows)
    finally:
        c.close()


def test_a_map_over_a_referenced_list(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    c = Cluster(
        tmp_path,
        extra_env={"DAGFLOW_OUTPUT_STORE": outputs.as_uri(), "DAGFLOW_OUTPUT_INLINE_MAX": "1024"},
    )
    try:
        c.worker("a", concurrency=2)
        # Given a parent whose list (about 100 kB) is kept by reference
        dag = make_dag(
            [
                task("list_files", "test.big", params={"items": 2000}),
                task("process", "test.map_item", ("list_files",), map="list_files.rows"),
                task("merge", "test.collect", ("process",)),
            ],
            name="map_by_ref",
        )
        handle = c.runner.submit(dag)
        result = handle.wait(timeout=TIMEOUT)
        # Then every instance got its item, and merge the results in order
        assert result.status == "success", result
        ref_of(c, handle.run_id, "list_files")
        merged = handle.outputs(["merge"])["merge"]
        assert merged["n"] == 2000
        assert merged["results"][1999] == {"item": f"item-{1999:06d}-" + "y" * 40, "index": 1999}
    finally:
        c.close()
