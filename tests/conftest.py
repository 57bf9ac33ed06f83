"""Shared fixtures: a private Redis server, its databases, and real Celery workers.

The session starts its own ``redis-server`` on a free port of 127.0.0.1 (see
:mod:`tests.support.redis_server`) and stops it at the end, so two runs of the suite on one
machine never share a database; ``DAGFLOW_TEST_REDIS=redis://host:port`` uses that server
instead (its databases 1 and 2 are flushed). Databases on the server:

* 1 (:func:`redis_db`): the core tests and the session worker, flushed before and after;
* 2 (:func:`scratch_redis`): a database of its own for each test that asks, flushed before
  and after that test (the scheduler, claim stores, Procfile, queue panel, outage tests).

Workers are started with :func:`tests.support.processes.start_worker` exactly as a user
would (``python -m celery -A dagflow worker``). The embedded runner is shared per session
because stopping an in-memory worker takes ~2 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
import redis

from dagflow.client.runner import Runner
from dagflow.settings import Settings
from tests.support.processes import ROOT, TEST_WORKFLOWS, start_worker, stop_worker, worker_env
from tests.support.rabbitmq import RabbitVhost, rabbitmq_available
from tests.support.redis_server import ExternalRedis, RedisServer, redis_server_binary
from tests.support.services import require

__all__ = ["ROOT", "TEST_WORKFLOWS", "start_worker", "stop_worker", "worker_env"]

#: Database of the core tests and the session worker.
CORE_DB = 1
#: Database handed to one test at a time by :func:`scratch_redis`.
SCRATCH_DB = 2
#: Database holding the run state of the RabbitMQ runs.
RABBIT_STORE_DB = 3


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Stop on SIGTERM as on Ctrl+C, so that the fixtures' teardown still runs.

    Workers and servers run in sessions of their own (a fault test kills them by process
    group); a suite stopped by SIGTERM (a CI timeout, ``kill``) would otherwise leave them
    running. KeyboardInterrupt makes pytest tear every fixture down before it exits.
    """
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer | ExternalRedis]:
    """The session's Redis: a private ``redis-server`` on a free port, stopped at the end.

    With ``DAGFLOW_TEST_REDIS`` set, that server instead (not started, not stopped).
    """
    external = os.environ.get("DAGFLOW_TEST_REDIS")
    if external:
        server = ExternalRedis(external)
        try:
            server.client().ping()
        except redis.RedisError as exc:
            pytest.fail(f"DAGFLOW_TEST_REDIS={external} does not answer: {exc}")
        yield server
        return
    require(
        redis_server_binary() is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    private = RedisServer.start(tmp_path_factory.mktemp("redis"))
    try:
        yield private
    finally:
        private.stop()


def _flushed(server: RedisServer | ExternalRedis, db: int) -> Iterator[str]:
    client = server.client(db)
    client.flushdb()
    try:
        yield server.url(db)
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def redis_db(redis_server: RedisServer | ExternalRedis) -> Iterator[str]:
    """URL of the core tests' database, flushed before and after the session."""
    yield from _flushed(redis_server, CORE_DB)


@pytest.fixture
def scratch_redis(redis_server: RedisServer | ExternalRedis) -> Iterator[str]:
    """URL of an empty database for this test alone, flushed before and after it."""
    yield from _flushed(redis_server, SCRATCH_DB)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the session's event log, state store and worker log."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_env(redis_db: str, logs_dir: Path) -> dict[str, str]:
    """Environment shared by the session worker and the tests that submit to it."""
    return worker_env(redis_db, logs_dir / "events.jsonl", logs_dir / "state.jsonl")


@pytest.fixture(scope="session")
def worker_log(logs_dir: Path) -> Path:
    """The session worker's log (``-l info``: one line per message received and finished)."""
    return logs_dir / "worker.log"


@pytest.fixture(scope="session")
def celery_worker_proc(
    redis_env: dict[str, str], worker_log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery -A dagflow worker`` (prefork, 4 processes) on the core database."""
    proc = start_worker(redis_env, worker_log)
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


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[RabbitVhost]:
    """A RabbitMQ vhost of this session's own (deleted at the end)."""
    require(rabbitmq_available(), "RabbitMQ is not running on 127.0.0.1:5672")
    vhost = RabbitVhost()
    try:
        yield vhost
    finally:
        vhost.delete()


@pytest.fixture(scope="session")
def rabbitmq_env(
    rabbit_vhost: RabbitVhost, redis_server: RedisServer | ExternalRedis, logs_dir: Path
) -> Iterator[dict[str, str]]:
    """Workers on RabbitMQ, with run state in Redis (database 3, flushed before and after)."""
    for backend in _flushed(redis_server, RABBIT_STORE_DB):
        yield worker_env(
            rabbit_vhost.url,
            logs_dir / "rabbit-events.jsonl",
            logs_dir / "rabbit-state.jsonl",
            DAGFLOW_RESULT_BACKEND=backend,
        )


@pytest.fixture(scope="session")
def rabbitmq_runner(rabbitmq_env: dict[str, str], logs_dir: Path) -> Iterator[Runner]:
    """A runner that sends runs to a real worker over RabbitMQ."""
    from dagflow import workflows

    proc = start_worker(rabbitmq_env, logs_dir / "rabbit-worker.log")
    settings = Settings.from_env(rabbitmq_env)
    workflows.load(settings.workflow_modules)
    runner = Runner(settings)
    try:
        yield runner
    finally:
        runner.close()
        stop_worker(proc)


@pytest.fixture(params=["embedded", "redis", "rabbitmq"])
def runner(request: pytest.FixtureRequest) -> Runner:
    """Each test using this runs three times: embedded, on Redis and on RabbitMQ workers."""
    return request.getfixturevalue(f"{request.param}_runner")  # type: ignore[no-any-return]
