"""The run store's Redis goes away mid-run and comes back: no step is lost or counted as failed.

The run store lives on its own ``redis-server`` (started here on a free port, with an
append-only file so a restart keeps its data); the broker stays on the shared Redis.
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

from dagflow.runner import Runner
from dagflow.settings import Settings
from tests.conftest import ROOT, start_worker, stop_worker, worker_env
from tests.support.dags import make_dag, task
from tests.support.net import free_port

pytestmark = pytest.mark.integration
BROKER_DB = 11


class RedisServer:
    """A private redis-server process that can be stopped and started again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def store_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_steps_wait_out_a_store_outage(store_server: RedisServer, tmp_path: Path) -> None:
    broker = f"redis://127.0.0.1:6379/{BROKER_DB}"
    redis.Redis.from_url(broker).flushdb()
    env = worker_env(
        broker,
        tmp_path / "events.jsonl",
        tmp_path / "state.jsonl",
        DAGFLOW_RESULT_BACKEND=store_server.url,
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
        while not (tmp_path / "pids.txt").exists():
            time.sleep(0.02)
        # When the store's Redis stops before the task finishes, and comes back 3 s later
        store_server.stop()
        time.sleep(3)
        store_server.start()
        # Then the run completes, each task succeeded on its first attempt
        result = handle.wait(timeout=60)
        assert (result.status, result.succeeded, result.failed) == ("success", 2, 0)
        events = [e for e in runner.runtime.events.read() if e.get("run_id") == handle.run_id]
        assert not [e for e in events if e["event"] in ("task_fail", "task_retry")]
        assert all(e["attempt"] == 1 for e in events if e["event"] == "task_ok")
        assert "run store unreachable" in (tmp_path / "worker.log").read_text()
    finally:
        stop_worker(proc)
        redis.Redis.from_url(broker).flushdb()


def test_cli_says_one_line_when_redis_goes_away_mid_run(
    store_server: RedisServer, tmp_path: Path
) -> None:
    # Given `dagflow run` waiting on a Redis that no worker serves
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_"))}
    env.update(
        DAGFLOW_BROKER_URL=store_server.url,
        ORCH_EVENTS_PATH=str(tmp_path / "events.jsonl"),
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagflow",
            "run",
            "--quiet",
            str(ROOT / "dags" / "weekly_ops_chain.yaml"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "events.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # When Redis stops
    store_server.stop()
    out, err = proc.communicate(timeout=60)
    # Then the command ends with exit 3 and one line naming the error, no traceback
    assert proc.returncode == 3, out + err
    assert "Traceback" not in err
    assert err.strip().startswith("ConnectionError:") and len(err.strip().splitlines()) == 1
