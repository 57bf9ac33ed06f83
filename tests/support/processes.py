"""Start and stop ``celery worker`` subprocesses the same way in ``tests/`` and ``bench/``.

A worker is ``sys.executable -m celery -A <app> worker`` (the interpreter running the suite,
never a ``celery`` found on PATH), started in its own session so that stopping or killing it
reaches its pool children and nothing else. :func:`start_worker` returns only once the
worker logged `` ready.``: it is consuming, so a test may send to it at once.

Nothing here imports pytest, so the benchmarks can use it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: The repository root: workers run here and import ``dagflow`` and ``tests`` from it.
ROOT = Path(__file__).resolve().parents[2]
#: The workflows the integration tests run (see :mod:`tests.support.workflows`).
TEST_WORKFLOWS = "tests.support.workflows"
#: Seconds a worker has to log " ready." after it is started.
READY_TIMEOUT_S = 30.0
#: Seconds a worker has to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT_S = 20.0


def worker_env(broker: str, events: Path, state: Path, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess and the Settings of the test that talks to it.

    Args:
        broker: ``DAGFLOW_BROKER_URL`` (the run store defaults to the same database).
        events: ``ORCH_EVENTS_PATH``.
        state: ``STATE_STORE_PATH``.
        **extra: More variables, set last.
    """
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


def start_worker(
    env: dict[str, str],
    log: Path,
    *,
    concurrency: int = 4,
    pool: str = "prefork",
    name: str | None = None,
    extra_args: Sequence[str] = (),
    app: str = "dagflow",
    cwd: Path = ROOT,
    loglevel: str = "info",
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``celery -A <app> worker`` and wait until it logged that it is ready.

    Args:
        env: The worker's whole environment (see :func:`worker_env`).
        log: File that receives its stdout and stderr.
        concurrency: Pool size (``-c``).
        pool: Pool implementation (``--pool``).
        name: Node name (``-n``); a unique one by default.
        extra_args: More command-line arguments, appended.
        app: The ``-A`` argument.
        cwd: Folder the worker runs in.
        loglevel: ``-l``. Celery logs `` ready.`` at info; an app started at a higher level
            must print it itself on ``worker_ready`` (``bench.bench_app`` does).
        prefix: A command the worker runs under, such as ``ip netns exec NAME`` (it must
            exec the worker, so that the process group still holds everything it started).

    Raises:
        RuntimeError: The worker exited, or was not ready in :data:`READY_TIMEOUT_S`
            (it is killed then); the message ends with the tail of its log.
    """
    cmd = [
        *prefix, sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool", pool, "-c", str(concurrency), "-l", loglevel,
        "--without-mingle", "--without-gossip", "--without-heartbeat",
        "-n", name or f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        *extra_args,
    ]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early ({proc.returncode}):\n{log_tail(log)}")
        if " ready." in log.read_text(errors="replace"):
            return proc
        if time.monotonic() > deadline:
            kill_worker(proc)
            raise RuntimeError(f"worker not ready after {READY_TIMEOUT_S} s:\n{log_tail(log)}")
        time.sleep(0.05)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """Warm shutdown: SIGTERM to the worker's process group, wait, then SIGKILL the group."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    kill_worker(proc)


def kill_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's whole process group (the main process and its pool children)."""
    _signal_group(proc, signal.SIGKILL)
    proc.wait(STOP_TIMEOUT_S)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group was created by start_new_session=True, so its id is the worker's pid and it
    # holds only processes this worker started. A group that is gone needs nothing.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def log_tail(log: Path, lines: int = 40) -> str:
    """The last ``lines`` of a log file, for error messages."""
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def dagflow_cli(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m dagflow ARGS`` in a new process, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "dagflow", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
