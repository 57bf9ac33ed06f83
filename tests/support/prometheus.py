"""A real Prometheus server and a ``dagflow metrics`` exporter, as subprocesses of a test.

:class:`Prometheus` starts Debian's ``/usr/bin/prometheus`` (package ``prometheus``) on a
free port of 127.0.0.1 with a config and data folder of its own, scraping the given targets
every second; :meth:`Prometheus.stop` kills it by its pid. :class:`Exporter` runs
``python -m dagflow metrics`` and reads its ``/metrics``. Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port
from tests.support.processes import ROOT, log_tail

READY_TIMEOUT_S = 30.0


def prometheus_binary() -> str | None:
    """``prometheus`` on PATH (Debian installs it in /usr/bin), or None."""
    return shutil.which("prometheus")


def promtool_binary() -> str | None:
    """``promtool`` on PATH (from the same Debian package), or None."""
    return shutil.which("promtool")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """``(status, body)`` of a GET (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait(check: Any, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log_tail(log)}")
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {READY_TIMEOUT_S} s:\n{log_tail(log)}")
        time.sleep(0.1)


class Exporter:
    """``python -m dagflow metrics --port <free>`` in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dagflow", "metrics", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(lambda: http_get(self.url("/health"))[0] == 200, "dagflow metrics", self.proc, log)

    def url(self, path: str = "/metrics") -> str:
        """The exporter's URL for ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of one scrape: ``(name, sorted labels) -> value``."""
        status, text = http_get(self.url())
        assert status == 200, text
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def kill(self) -> None:
        """SIGKILL its process group (only this exporter's processes)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class Prometheus:
    """A private Prometheus scraping ``targets`` (``host:port``) every second."""

    def __init__(self, root: Path, targets: Sequence[str]) -> None:
        binary = prometheus_binary()
        assert binary is not None, "prometheus is not installed"
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = root / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "dagflow", "static_configs": [{"targets": list(targets)}]}
                    ],
                }
            )
        )
        self.log = root / "prometheus.log"
        with self.log.open("wb") as handle:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(
            lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200,
            "prometheus",
            self.proc,
            self.log,
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (``/api/v1/query``): ``[{"metric":…, "value":…}]``."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        status, body = http_get(url)
        reply = json.loads(body)
        assert status == 200 and reply["status"] == "success", body
        return list(reply["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` (None when the vector is empty)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        """Kill it by its pid (its process group holds only this server)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
