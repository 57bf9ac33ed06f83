"""Start ``dagflow api`` as a real process, and talk to it over real HTTP (tests and bench).

The server is ``sys.executable -m dagflow api --port FREE`` in its own session, so stopping
it reaches it and nothing else; :func:`start_api` returns once ``/api/v1/health`` answers.
:func:`call` is a small ``urllib`` client that returns the status, the decoded JSON body (or
the text) and the headers, whatever the status. Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.net import free_port
from tests.support.processes import ROOT, log_tail

#: Seconds the server has to answer its health route after it is started.
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body (JSON decoded when it is JSON) and headers."""

    status: int
    body: Any
    headers: dict[str, str]
    text: str


def call(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    """Send one request to ``base + path`` (``body`` is sent as JSON)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(base + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), dict(exc.headers)
    text = raw.decode(errors="replace")
    try:
        decoded = json.loads(text) if text else None
    except ValueError:
        decoded = None
    return Reply(int(status), decoded, {k.lower(): v for k, v in got.items()}, text)


def start_api(
    env: dict[str, str], log: Path, *, port: int | None = None, cwd: Path = ROOT
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m dagflow api`` on a free port; return it and its base URL.

    Raises:
        RuntimeError: It exited, or its health route did not answer in time (it is killed).
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "dagflow", "api", "--port", str(port)]
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
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"dagflow api exited ({proc.returncode}):\n{log_tail(log)}")
        with contextlib.suppress(OSError):
            if call(base, "GET", "/api/v1/health", timeout=2).status == 200:
                return proc, base
        if time.monotonic() > deadline:
            stop_api(proc)
            raise RuntimeError(f"dagflow api not ready in {READY_TIMEOUT_S} s:\n{log_tail(log)}")
        time.sleep(0.1)


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not exited in 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def create_token(env: dict[str, str], *args: str) -> tuple[str, str]:
    """``dagflow tokens create ARGS``: the token's id and the token it printed once."""
    proc = subprocess.run(
        [sys.executable, "-m", "dagflow", "tokens", "create", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = proc.stdout.strip()
    return token.split("_")[1], token
