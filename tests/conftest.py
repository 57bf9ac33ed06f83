"""Shared fixtures: a real Redis database and real Celery workers started as subprocesses.

Core integration tests use Redis database 10 (flushed before and after the session) and a
worker started with ``celery -A dagflow worker`` exactly as a user would. The embedded
runner is shared per session because stopping an in-memory worker takes ~2 s.
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

ROOT = Path(__file__).resolve().parent.parent
REDIS_BASE = os.environ.get("DAGFLOW_TEST_REDIS", "redis://127.0.0.1:6379")
CORE_DB = 10
TEST_WORKFLOWS = "tests.support.workflows"


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(f"{REDIS_BASE}/0").ping())
    except redis.RedisError:
        return False


def worker_env(broker: str, events: Path, state: Path, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess and the Settings of the test that talks to it."""
    env = dict(os.environ)
    env.update(
        DAGFLOW_BROKER_URL=broker,
        DAGFLOW_WORKFLOWS=TEST_WORKFLOWS,
        ORCH_EVENTS_PATH=str(events),
        STATE_STORE_PATH=str(state),
        DAGFLOW_RETRY_BASE_S="0.05",
        DAGFLOW_RETRY_MAX_S="0.5",
        DAGFLOW_RETRY_JITTER="0",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path, concurrency: int = 4) -> subprocess.Popen[bytes]:
    """Start ``celery -A dagflow worker`` and wait until it is ready to consume."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "dagflow", "worker",
        "--pool", "prefork", "-c", str(concurrency), "-l", "info",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
        "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
    ]  # fmt: skip
    handle = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log.read_text()}")
        if " ready." in log.read_text():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"worker not ready after 30 s:\n{log.read_text()}")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker subprocess (warm shutdown, then kill)."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """URL of the core tests' Redis database, flushed before and after the session."""
    if not _redis_available():
        pytest.fail(f"integration tests need a Redis server at {REDIS_BASE}")
    url = f"{REDIS_BASE}/{CORE_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the session's event log, state store and worker log."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_env(redis_db: str, logs_dir: Path) -> dict[str, str]:
    """Environment shared by the session worker and the tests that submit to it."""
    return worker_env(redis_db, logs_dir / "events.jsonl", logs_dir / "state.jsonl")


@pytest.fixture(scope="session")
def celery_worker_proc(
    redis_env: dict[str, str], logs_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery -A dagflow worker`` (prefork, 4 processes) on the core database."""
    proc = start_worker(redis_env, logs_dir / "worker.log")
    yield proc
    stop_worker(proc)


@pytest.fixture(scope="session")
def redis_runner(redis_env: dict[str, str], celery_worker_proc: object) -> Iterator[Runner]:
    """A runner that sends runs to the session worker over Redis."""
    from dagflow import workflows

    settings = Settings.from_env(redis_env)
    workflows.load(settings.workflow_modules)
    runner = Runner(settings)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def embedded_runner(logs_dir: Path) -> Iterator[Runner]:
    """A runner with the embedded (in-process, in-memory) worker."""
    from dagflow import workflows

    env = worker_env("", logs_dir / "embedded-events.jsonl", logs_dir / "embedded-state.jsonl")
    env.pop("DAGFLOW_BROKER_URL")
    env.pop("REDIS_URL", None)
    env["QUEUE_BACKEND"] = "memory"
    settings = Settings.from_env(env)
    workflows.load(settings.workflow_modules)
    runner = Runner(settings)
    runner.start_embedded_worker(loglevel="WARNING")
    yield runner
    runner.close()


@pytest.fixture(params=["embedded", "redis"])
def runner(request: pytest.FixtureRequest) -> Runner:
    """Each test using this runs twice: on the embedded worker and on Redis workers."""
    return request.getfixturevalue(f"{request.param}_runner")  # type: ignore[no-any-return]
