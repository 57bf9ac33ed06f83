"""A private Redis Sentinel deployment: a primary, one replica and three sentinels.

Every process listens on a free port of 127.0.0.1, keeps its files in the test's folder,
runs in its own session and is stopped or killed by its own pid: nothing here signals a
process it did not start, and nothing touches 6379 or 26379. Sentinels use short timers
(:data:`DOWN_AFTER_MS`, :data:`FAILOVER_TIMEOUT_MS`) so a promotion takes seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support.net import free_port
from tests.support.redis_server import RedisServer, terminate

#: Sentinels that must agree the primary is down (of :data:`SENTINELS`).
QUORUM = 2
SENTINELS = 3
#: Milliseconds without an answer before a sentinel thinks a server is down.
DOWN_AFTER_MS = 1000
#: Milliseconds a failover may take before another sentinel may try again.
FAILOVER_TIMEOUT_MS = 5000
#: Seconds to wait for the deployment to be ready (replica synced, sentinels met).
READY_TIMEOUT_S = 30.0
#: Seconds to wait for a sentinel to answer after it is started, and to exit after SIGTERM.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def sentinel_binary() -> str | None:
    """Path of ``redis-sentinel`` (Debian's ``redis-sentinel``), or None when not installed."""
    return shutil.which("redis-sentinel")


class SentinelProcess:
    """One ``redis-sentinel`` with its own config file (Sentinel rewrites it as it learns)."""

    def __init__(self, dir: Path, port: int, master_name: str, primary_port: int) -> None:
        self.dir = dir
        self.port = port
        dir.mkdir(parents=True, exist_ok=True)
        conf = dir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile sentinel.log\n"
            f"sentinel monitor {master_name} 127.0.0.1 {primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {master_name} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {master_name} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )
        binary = sentinel_binary()
        if binary is None:
            raise FileNotFoundError("redis-sentinel is not installed")
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [binary, str(conf)],
            cwd=dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.client = redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-sentinel exited early:\n{self.log_tail()}")
            with contextlib.suppress(redis.RedisError):
                if self.client.ping():
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-sentinel did not answer in time:\n{self.log_tail()}")
            time.sleep(0.02)

    def master(self, name: str) -> dict[str, object]:
        """``SENTINEL MASTER <name>`` as this sentinel sees it."""
        return dict(self.client.sentinel_master(name))

    def stop(self) -> None:
        """SIGTERM this sentinel and wait (SIGKILL if it does not exit in time)."""
        proc, self.proc = self.proc, None
        self.client.close()
        terminate(proc)

    def kill(self) -> None:
        """SIGKILL this sentinel and reap it."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of this sentinel's log."""
        path = self.dir / "sentinel.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class SentinelCluster:
    """A primary, a replica of it and :data:`SENTINELS` sentinels watching them.

    Attributes:
        master_name: The name the sentinels know the primary by.
        primary: The server that is the primary at the start.
        replica: The server that replicates it (and is promoted when it dies).
        sentinels: The sentinel processes.
    """

    def __init__(
        self,
        master_name: str,
        primary: RedisServer,
        replica: RedisServer,
        sentinels: list[SentinelProcess],
    ) -> None:
        self.master_name = master_name
        self.primary = primary
        self.replica = replica
        self.sentinels = sentinels

    @classmethod
    def start(cls, root: Path, master_name: str = "dagflow-test") -> SentinelCluster:
        """Start everything under ``root`` and wait until the sentinels know the replica and
        each other (a failover needs both).

        Raises:
            FileNotFoundError: ``redis-server`` or ``redis-sentinel`` is not installed.
            RuntimeError: The deployment was not ready in :data:`READY_TIMEOUT_S` (what
                each sentinel saw is in the message); everything started is stopped.
        """
        # No delay before the first full sync (Redis 7 waits 5 s for more replicas).
        sync = ["--repl-diskless-sync-delay", "0"]
        primary = RedisServer.start(root / "primary", args=sync)
        started: list[RedisServer | SentinelProcess] = [primary]
        try:
            replica = RedisServer.start(
                root / "replica", args=[*sync, "--replicaof", "127.0.0.1", str(primary.port)]
            )
            started.append(replica)
            cluster = cls(master_name, primary, replica, [])
            cluster._wait(cluster._replica_synced, "the replica synced with the primary")
            for n in range(SENTINELS):
                cluster.sentinels.append(
                    SentinelProcess(root / f"sentinel-{n}", free_port(), master_name, primary.port)
                )
            started.extend(cluster.sentinels)
            cluster._wait(cluster._sentinels_ready, "the sentinels see the replica and each other")
            return cluster
        except BaseException:
            for thing in reversed(started):
                thing.stop()
            raise

    def url(self, db: int = 0) -> str:
        """The deployment's ``sentinel://`` URL (every sentinel, database ``db``)."""
        return ";".join(f"sentinel://127.0.0.1:{s.port}/{db}" for s in self.sentinels)

    def master_port(self) -> int | None:
        """The primary's port as the first sentinel that answers reports it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                return int(sentinel.master(self.master_name)["port"])  # type: ignore[call-overload]
        return None

    def kill_primary(self) -> None:
        """SIGKILL the primary (no goodbye to its clients, its replica or the sentinels)."""
        self.primary.kill()

    def wait_promoted(self, timeout: float = 30.0) -> float:
        """Wait until every sentinel names the replica as the primary; return the seconds
        waited."""
        started = time.monotonic()
        self._wait(
            lambda: all(self._names_replica(s) for s in self.sentinels),
            "the sentinels promoted the replica",
            timeout,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop every sentinel and server this cluster started (each by its own pid)."""
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.primary.stop()

    def state(self) -> str:
        """What each sentinel and the replica report, for failure messages."""
        lines = []
        for sentinel in self.sentinels:
            try:
                seen = sentinel.master(self.master_name)
                lines.append(
                    f"sentinel :{sentinel.port}: primary :{seen.get('port')} "
                    f"flags={seen.get('flags')} replicas={seen.get('num-slaves')} "
                    f"other sentinels={seen.get('num-other-sentinels')}"
                )
            except redis.RedisError as exc:
                lines.append(f"sentinel :{sentinel.port}: {exc!r}")
            lines.append(sentinel.log_tail(8))
        lines.append(f"replica: {self._replication(self.replica)}")
        return "\n".join(lines)

    def _names_replica(self, sentinel: SentinelProcess) -> bool:
        with contextlib.suppress(redis.RedisError):
            return int(sentinel.master(self.master_name)["port"]) == self.replica.port  # type: ignore[call-overload]
        return False

    def _replication(self, server: RedisServer) -> dict[str, object]:
        client = server.client()
        try:
            return dict(client.info("replication"))
        except redis.RedisError as exc:
            return {"error": repr(exc)}
        finally:
            client.close()

    def _replica_synced(self) -> bool:
        return self._replication(self.replica).get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            try:
                seen = sentinel.master(self.master_name)
            except redis.RedisError:
                return False
            if int(seen.get("num-slaves", 0)) < 1:  # type: ignore[call-overload]
                return False
            if int(seen.get("num-other-sentinels", 0)) < SENTINELS - 1:  # type: ignore[call-overload]
                return False
        return True

    def _wait(self, check: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not in {timeout} s\n{self.state()}")
            time.sleep(0.05)


def cut_replication(cluster: SentinelCluster) -> None:
    """Stop the replica from receiving the primary's writes, while both stay up.

    The replica is told a wrong ``masterauth`` and its link to the primary is closed: it
    fails to authenticate at every reconnect, so every write the primary acknowledges from
    now on is one a promotion of this replica loses. Sentinel still promotes it when the
    primary dies within about ``10 * DOWN_AFTER_MS`` (how long it tolerates a replica's
    broken link).
    """
    client = cluster.replica.client()
    try:
        client.config_set("masterauth", "not-the-primarys")
        client.client_kill_filter(_type="master")
    finally:
        client.close()
    cluster._wait(
        lambda: cluster._replication(cluster.replica).get("master_link_status") == "down",
        "the replica's link to the primary is down",
        10,
    )
