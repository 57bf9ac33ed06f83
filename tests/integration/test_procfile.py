"""The Procfile as an operator runs it: ``honcho start`` brings up the whole system.

worker, beat, dashboard, Flower, the metrics exporter and the HTTP API start from the
Procfile with Redis as the one server; beat fires an every-minute schedule at once (a
schedule that never ran starts at the current minute), the worker runs the DAG, and the web
UIs answer on localhost, Flower behind basic auth (the exporter's ``/health`` and
``/metrics`` too, and the API's health route).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.processes import ROOT
from tests.support.services import require_executable

pytestmark = pytest.mark.integration


def _status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_honcho_starts_worker_beat_dashboard_flower_metrics_and_api(
    scratch_redis: str, tmp_path: Path
) -> None:
    honcho = require_executable("honcho", "it is in the dev extras")
    broker = scratch_redis
    schedules = tmp_path / "schedules"
    schedules.mkdir()
    (schedules / "every.yaml").write_text(
        '- id: every_minute\n  cron: "* * * * *"\n  dag: dags/weekly_ops_chain.yaml\n'
        "  tenant: procfile-test\n"
    )
    dash_port, flower_port, metrics_port = free_port(), free_port(), free_port()
    api_port = free_port()
    state = tmp_path / "state.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_"))}
    env.update(
        DAGFLOW_BROKER_URL=broker,
        DAGFLOW_SCHEDULES_DIR=str(schedules),
        ORCH_EVENTS_PATH=str(tmp_path / "events.jsonl"),
        STATE_STORE_PATH=str(state),
        DAGFLOW_DASHBOARD_PORT=str(dash_port),
        DAGFLOW_METRICS_PORT=str(metrics_port),
        FLOWER_PORT=str(flower_port),
        DAGFLOW_API_PORT=str(api_port),
        FLOWER_BASIC_AUTH="ops:secret",
        PYTHONPATH=str(ROOT),
    )
    log = (tmp_path / "honcho.log").open("wb")
    proc = subprocess.Popen(
        [honcho, "start", "-f", str(ROOT / "Procfile")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        finished: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            if state.exists():
                finished = [
                    r for line in state.read_text().splitlines()
                    if (r := json.loads(line))["event"] == "run_finished"
                ]  # fmt: skip
            up = _status(f"http://127.0.0.1:{dash_port}/") == 200
            metrics_up = _status(f"http://127.0.0.1:{metrics_port}/health") == 200
            up = up and _status(f"http://127.0.0.1:{api_port}/api/v1/health") == 200
            if (
                finished
                and up
                and metrics_up
                and _status(f"http://127.0.0.1:{flower_port}/") == 401
            ):
                break
            time.sleep(0.5)
        output = (tmp_path / "honcho.log").read_text(errors="replace")
        assert finished, output
        assert finished[0]["status"] == "success" and finished[0]["schedule_id"] == "every_minute"
        assert _status(f"http://127.0.0.1:{dash_port}/") == 200, output
        assert _status(f"http://127.0.0.1:{flower_port}/") == 401, output
        assert _status(f"http://127.0.0.1:{flower_port}/", auth="ops:secret") == 200, output
        assert _status(f"http://127.0.0.1:{metrics_port}/metrics") == 200, output
        assert _status(f"http://127.0.0.1:{api_port}/api/v1/health") == 200, output
        assert _status(f"http://127.0.0.1:{api_port}/api/v1/runs") == 401, output
        for name in ("worker.1", "beat.1", "dashboard.1", "flower.1", "metrics.1", "api.1"):
            assert name in output
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
