"""The run store's Redis goes away mid-run and comes back: no step is lost or counted as failed.

The run store lives on its own ``redis-server`` (started here on a free port, with an
append-only file so a restart keeps its data); the broker is a database of the session's
private Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dagflow.client.runner import RunHandle, Runner, get_run, list_runs
from dagflow.errors import DagflowError, UnreachableError
from dagflow.settings import Settings
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT, start_worker, stop_worker, worker_env
from tests.support.redis_server import RedisServer, redis_server_binary
from tests.support.services import require
from tests.support.waiting import wait_for, wait_for_file

pytestmark = pytest.mark.integration


@pytest.fixture
def store_server(tmp_path: Path) -> Iterator[RedisServer]:
    """The run store's own redis-server, with an append-only file so a restart keeps data."""
    require(redis_server_binary() is not None, "redis-server is not installed")
    server = RedisServer.start(tmp_path / "store-redis", appendonly=True)
    yield server
    server.stop()


def _stop_for_3_s(server: RedisServer) -> None:
    server.stop()
    time.sleep(3)
    server.restart()


def _refuse_writes_for_3_s(server: RedisServer) -> None:
    """A primary with ``min-replicas-to-write 1`` and no replica refuses writes (NOREPLICAS)."""
    admin = server.client()
    admin.config_set("min-replicas-to-write", 1)
    try:
        time.sleep(3)
    finally:
        admin.config_set("min-replicas-to-write", 0)


#: How the store's Redis is made unusable, and what the worker's log then names.
OUTAGES = {
    "stopped": (_stop_for_3_s, "run store unreachable"),
    "refusing writes": (_refuse_writes_for_3_s, "NOREPLICAS"),
}


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_steps_wait_out_a_store_outage(
    outage: str, store_server: RedisServer, scratch_redis: str, tmp_path: Path
) -> None:
    env = worker_env(
        scratch_redis,
        tmp_path / "events.jsonl",
        tmp_path / "state.jsonl",
        DAGFLOW_RESULT_BACKEND=store_server.url(),
    )
    proc = start_worker(env, tmp_path / "worker.log", concurrency=2)
    try:
        runner = Runner(Settings.from_env(env))
        # Given a run whose first task is running
        dag = make_dag(
            [
                task("slow", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 1.0}),
                task("next", deps=("slow",)),
            ]
        )
        handle = runner.submit(dag)
        wait_for_file(tmp_path / "pids.txt")
        # When the store's Redis stops, or refuses writes, before the task finishes, for 3 s
        interrupt, named = OUTAGES[outage]
        interrupt(store_server)
        # Then the run completes, each task succeeded on its first attempt, run once
        result = handle.wait(timeout=60)
        assert (result.status, result.succeeded, result.failed) == ("success", 2, 0)
        events = [e for e in runner.runtime.events.read() if e.get("run_id") == handle.run_id]
        assert not [e for e in events if e["event"] in ("task_fail", "task_retry")]
        assert all(e["attempt"] == 1 for e in events if e["event"] == "task_ok")
        assert len((tmp_path / "pids.txt").read_text().splitlines()) == 1
        log = (tmp_path / "worker.log").read_text()
        assert "run store unreachable" in log and named in log
    finally:
        stop_worker(proc)


def test_a_waiting_cli_rides_out_a_redis_outage_until_its_timeout(
    store_server: RedisServer, tmp_path: Path
) -> None:
    # Given `dagflow run --timeout 8` waiting on a Redis that no worker serves
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_"))}
    env.update(
        DAGFLOW_BROKER_URL=store_server.url(),
        ORCH_EVENTS_PATH=str(tmp_path / "events.jsonl"),
        PYTHONPATH=str(ROOT),
    )
    dag = str(ROOT / "dags" / "weekly_ops_chain.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagflow", "run", "--quiet", "--timeout", "8", dag],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # (the run's start message is on the queue: no worker takes it)
        client = store_server.client()
        wait_for(lambda: client.llen("celery") >= 1, 30, "the start message is queued")
        client.close()
        # When Redis stops (and stays down)
        store_server.stop()
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed wait must not leave the CLI running
            proc.kill()
            proc.wait(10)
    # Then it keeps trying until --timeout, then says the run goes on and how to follow it
    assert proc.returncode == 4, out + err
    assert time.monotonic() - started >= 3  # it did not give up at the first error
    assert "Traceback" not in err
    run_id = out.split()[1].rstrip(":")
    assert f"run {run_id} goes on on the workers" in err
    assert f"dagflow wait {run_id}" in err


def test_the_python_api_raises_one_dagflow_error_when_redis_is_unreachable(
    store_server: RedisServer, tmp_path: Path
) -> None:
    # Given settings whose broker and run store are a Redis that is down
    url = store_server.url().replace("redis://", "redis://:s3cret@")
    store_server.stop()
    settings = Settings(broker_url=url, result_backend=url)
    dag = make_dag([task("a")])
    # When the Python API is used, Then each call raises UnreachableError, a DagflowError
    # that names the URL without its password, and the transport's error as its cause
    calls = {
        "submit": lambda: Runner(settings).submit(dag),
        "get_run": lambda: get_run("some-run", settings=settings, timeout=0.5),
        "list_runs": lambda: list_runs(settings=settings),
        "status": lambda: RunHandle(Runner(settings), "some-run").status(),
        "outputs": lambda: RunHandle(Runner(settings), "some-run").outputs(),
    }
    for name, call in calls.items():
        with pytest.raises(DagflowError) as caught:
            call()
        error = caught.value
        assert isinstance(error, UnreachableError), name
        assert error.url == f"redis://:**@127.0.0.1:{store_server.port}/0", name
        assert "s3cret" not in str(error) and str(error).startswith(f"cannot reach {error.url}: ")
        assert isinstance(error.__cause__, redis.exceptions.ConnectionError), name
