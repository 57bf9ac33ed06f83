"""A small dagflow deployment a fault test owns: its own redis-server, workers and client.

Each fault test gets a fresh :class:`Cluster`: a private ``redis-server`` (with an
append-only file, so a restart keeps the data), short leases so recovery takes seconds, and
workers started as real ``celery -A dagflow worker`` processes that the test may kill. The
cluster stops everything it started, and nothing else.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagflow import workflows
from dagflow.client.runner import Runner
from dagflow.settings import Settings
from tests.support.processes import kill_worker, start_worker, stop_worker, worker_env
from tests.support.redis_server import RedisServer

#: Lease and sweep interval of fault tests, in seconds (the defaults are 30 and 5).
LEASE_S = 2.0
SWEEP_S = 0.5


class Cluster:
    """Redis, workers and a runner for one test.

    Args:
        root: Folder for the server's data, the logs and the event log.
        broker: Broker URL (default: the private Redis); the run store is the private Redis.
        appendonly: Keep an append-only file (restarts keep the data).
        extra_env: More environment variables for workers and the runner; they override
            the defaults (lease, sweep, store retry, result backend).
    """

    def __init__(
        self,
        root: Path,
        *,
        broker: str | None = None,
        appendonly: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.server = RedisServer.start(root / "redis", appendonly=appendonly)
        self.events_path = root / "events.jsonl"
        defaults = {
            "DAGFLOW_RESULT_BACKEND": self.server.url(0),
            "DAGFLOW_LEASE_S": str(LEASE_S),
            "DAGFLOW_SWEEP_S": str(SWEEP_S),
            "DAGFLOW_STORE_RETRY_S": "30",
        }
        # extra_env wins over the defaults above (a chaos run sets its own lease and sweep).
        self.env = worker_env(
            broker or self.server.url(0),
            self.events_path,
            root / "state.jsonl",
            **{**defaults, **dict(extra_env or {})},
        )
        self.settings = Settings.from_env(self.env)
        workflows.load(self.settings.workflow_modules)
        self.runner = Runner(self.settings)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def worker(
        self, name: str, concurrency: int = 1, extra_args: Sequence[str] = (), **env: str
    ) -> subprocess.Popen[bytes]:
        """Start worker ``name`` (node name ``name@<host>``) and wait until it is ready;
        ``extra_args`` go to ``celery worker`` (``-Q gpu``)."""
        proc = start_worker(
            {**self.env, **env},
            self.root / f"worker-{name}.log",
            concurrency=concurrency,
            name=f"{name}@%h",
            extra_args=extra_args,
        )
        self.workers[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name``'s whole process group."""
        kill_worker(self.workers.pop(name))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's events, in log order (from the event stream every worker writes to)."""
        return [e for e in self.runner.runtime.events.read() if e.get("run_id") == run_id]

    def log(self, name: str) -> str:
        """Worker ``name``'s log so far."""
        return (self.root / f"worker-{name}.log").read_text(errors="replace")

    def close(self) -> None:
        """Stop every worker still running, the runner and the server."""
        for proc in self.workers.values():
            stop_worker(proc, timeout=5)
        self.workers.clear()
        self.runner.close(wait=False)
        self.server.stop()


def count(events: list[dict[str, Any]], name: str, task_id: str | None = None) -> int:
    """How many ``name`` events (of ``task_id``, if given) the list holds."""
    return sum(
        1 for e in events if e["event"] == name and (task_id is None or e.get("task_id") == task_id)
    )
