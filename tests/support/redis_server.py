"""A private ``redis-server`` process that a test session (or one test) owns.

The suite never uses a Redis it did not start (unless ``DAGFLOW_TEST_REDIS`` says so), so
two runs of the suite on one machine cannot flush each other's data. A fault test can stop,
kill and restart its own server; nothing here ever signals a process it did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from tests.support.net import free_port

#: Seconds to wait for a started server to answer PING.
START_TIMEOUT_S = 10.0
#: Seconds to wait for a server to exit after SIGTERM (then it is killed).
STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    """Path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a server process this suite started and wait for it (SIGKILL if it does not
    exit within :data:`STOP_TIMEOUT_S`); nothing for one that is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


class RedisServer:
    """One ``redis-server`` on 127.0.0.1 (and any other addresses given), in its own session.

    Attributes:
        dir: Working folder of the server (its log, and its append-only file if any).
        port: TCP port it listens on.
        appendonly: Whether it keeps an append-only file (fsync on every write), so a
            restart keeps its data.
        bind: Addresses it listens on besides 127.0.0.1.
        args: More ``redis-server`` arguments (``--replicaof HOST PORT``).
    """

    def __init__(
        self,
        dir: Path,
        port: int,
        appendonly: bool,
        bind: Sequence[str] = (),
        args: Sequence[str] = (),
    ) -> None:
        self.dir = dir
        self.port = port
        self.appendonly = appendonly
        self.bind = tuple(bind)
        self.args = tuple(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        bind: Sequence[str] = (),
        args: Sequence[str] = (),
    ) -> RedisServer:
        """Start a server on ``port`` (a free one if None) and wait until it answers PING.

        Args:
            dir: Working folder (created if missing).
            port: TCP port; a free one of 127.0.0.1 by default (pass one that is also free
                on the ``bind`` addresses if that matters).
            appendonly: Keep an append-only file.
            bind: More addresses to listen on, such as a veth address a test created. Clients
                then connect from non-loopback addresses, so protected mode is switched off.
            args: More ``redis-server`` arguments, last (``--replicaof 127.0.0.1 PORT``).

        Raises:
            FileNotFoundError: ``redis-server`` is not installed.
            RuntimeError: It exited or did not answer in :data:`START_TIMEOUT_S`.
        """
        dir.mkdir(parents=True, exist_ok=True)
        server = cls(dir, port or free_port(), appendonly, bind, args)
        server._spawn()
        return server

    def url(self, db: int = 0, host: str = "127.0.0.1") -> str:
        """``redis://<host>:<port>/<db>`` (``host``: 127.0.0.1 or one of :attr:`bind`)."""
        return f"redis://{host}:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A new client on database ``db`` (close it when done)."""
        return redis.Redis.from_url(self.url(db))

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the server and wait for it (SIGKILL if it does not exit in time)."""
        proc, self.proc = self.proc, None
        terminate(proc)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save, no goodbye to clients) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Start the server again on the same port and folder (stopping it first if needed)."""
        self.stop()
        self._spawn()

    def _spawn(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        cmd = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", *self.bind,
            "--dir", str(self.dir), "--save", "", "--daemonize", "no", "--logfile", "redis.log",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.bind:
            cmd += ["--protected-mode", "no"]
        if self.appendonly:
            cmd += ["--appendfsync", "always"]
        cmd += self.args
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited early:\n{self.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"redis-server did not answer PING in {START_TIMEOUT_S} s:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of the server's log (for error messages)."""
        path = self.dir / "redis.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"RedisServer(port={self.port}, pid={pid}, dir={os.fspath(self.dir)!r})"


class ExternalRedis:
    """A Redis the suite was pointed at with ``DAGFLOW_TEST_REDIS`` (not started, never stopped).

    Offers the read side of :class:`RedisServer` (``url``, ``client``, ``port``); a test that
    must stop or kill Redis starts its own :class:`RedisServer` instead.
    """

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))  # without a db
        self.port = int(parts.port or 6379)

    def url(self, db: int = 0) -> str:
        """``<DAGFLOW_TEST_REDIS>/<db>``."""
        return f"{self.base}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A new client on database ``db``."""
        return redis.Redis.from_url(self.url(db))
