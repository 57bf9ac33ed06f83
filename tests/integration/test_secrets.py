"""Secret params on real workers: the value reaches the workflow and nothing else (Redis,
the event stream, the JSONL log, ``dagflow status --json``, the dashboard); a missing
secret fails at once; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from plotly.utils import PlotlyJSONEncoder

from dagflow.dashboard.callbacks import DashboardData, render_route, render_task_detail
from dagflow.wiring import collector
from tests.support.cluster import Cluster
from tests.support.dags import make_dag, task
from tests.support.workflows import _digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
TIMEOUT = 60
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = 'pw-Zq8#kL2v"quoted"-é'
TOKEN = "tok-4f1b7c9e2d8a"


def every_value(client: redis.Redis) -> bytes:
    """Every key and value of the database, read by type, as one blob to search."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        out.append(key)
        if kind == "string":
            out.append(client.get(key) or b"")
        elif kind == "hash":
            out += [b for kv in client.hgetall(key).items() for b in kv]
        elif kind == "list":
            out += client.lrange(key, 0, -1)
        elif kind == "set":
            out += list(client.smembers(key))
        elif kind == "zset":
            out += client.zrange(key, 0, -1)
        elif kind == "stream":
            out += [v for _, fields in client.xrange(key) for kv in fields.items() for v in kv]
    return b"\n".join(out)


def leaks(blob: bytes, *values: str) -> list[str]:
    """Which of ``values`` appear in ``blob``, as text or as JSON-escaped text."""
    found = []
    for value in values:
        forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        if any(f.encode() in blob for f in forms):
            found.append(value)
    return found


def test_a_secret_reaches_the_workflow_and_appears_nowhere_else(tmp_path: Path) -> None:
    # Given workers whose environment holds two secrets (the client's does not)
    c = Cluster(tmp_path)
    try:
        c.worker("a", DB_PASSWORD=PASSWORD, API_TOKEN=TOKEN)
        dag = make_dag(
            [
                task("login", "test.secret_use", params={"password": {"secret": "DB_PASSWORD"}}),
                task(
                    "bad_login",
                    "test.secret_use",
                    params={"password": {"secret": "DB_PASSWORD"}, "raise": True},
                    retries=1,
                ),
                task("after", "test.echo", ("login",)),
            ],
            name="secrets",
            params={"token": None},
        )
        # When a run passes one as a task param and one as a run-level param
        handle = c.runner.submit(dag, params={"token": {"secret": "API_TOKEN"}})
        result = handle.wait(timeout=TIMEOUT)
        # Then the workflow saw both values
        assert result.status == "failed" and result.failed == 1
        login = handle.outputs(["login"])["login"]
        assert login["password_sha256"] == _digest(PASSWORD)
        assert login["token_sha256"] == _digest(TOKEN)
        # and what it returned, raised and logged was redacted before it was stored
        assert login["leak"] == "the password is ***"
        bad = next(t for t in handle.status().tasks if t.task_id == "bad_login")
        assert bad.attempts == 2 and "password ***" in (bad.last.error or "")
        # And no value is in Redis (every key, and the RDB file), the JSONL log, status
        client = c.server.client(0)
        assert leaks(every_value(client), PASSWORD, TOKEN) == []
        client.config_set("rdbcompression", "no")
        client.save()
        rdb = (c.server.dir / "dump.rdb").read_bytes()
        assert b"DB_PASSWORD" in rdb  # the reference is there...
        assert leaks(rdb, PASSWORD, TOKEN) == []  # ...and the values are not
        reader = collector(c.settings)
        reader.setup()
        while reader.collect_once(block_ms=100):
            pass
        log = c.settings.events_path.read_bytes()
        assert b'"secret":"API_TOKEN"' in log.replace(b" ", b"")  # dag_start's params
        assert leaks(log, PASSWORD, TOKEN) == []
        assert leaks(c.log("a").encode(), PASSWORD, TOKEN) == []  # the worker's own log too
        env = {**c.env, "PYTHONPATH": str(ROOT)}
        for key in ("DB_PASSWORD", "API_TOKEN"):
            env.pop(key, None)
        status = subprocess.run(
            [sys.executable, "-m", "dagflow", "status", handle.run_id, "--json"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "bad_login" in status.stdout and leaks(status.stdout.encode(), PASSWORD, TOKEN) == []
        # And the dashboard's run page and task details show none of it
        data = DashboardData.from_settings(c.settings)
        path = f"/runs/{handle.run_id}"
        page = render_route(data, path)
        detail = render_task_detail(data, path, "?task=bad_login")
        html = json.dumps([page, detail], cls=PlotlyJSONEncoder).encode()
        assert b"bad_login" in html and b"PermissionError" in html
        assert leaks(html, PASSWORD, TOKEN) == []
    finally:
        c.close()


def test_a_missing_secret_fails_at_once_naming_it(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.worker("a")
        dag = make_dag(
            [
                task(
                    "login",
                    "test.secret_use",
                    params={"password": {"secret": "NOT_SET_ANYWHERE"}},
                    retries=2,
                )
            ],
            name="missing_secret",
            params={"token": "plain"},
        )
        handle = c.runner.submit(dag)
        assert handle.wait(timeout=TIMEOUT).status == "failed"
        (login,) = handle.status().tasks
        assert login.attempts == 1
        error = login.last.error or ""
        assert "SecretError" in error and "'NOT_SET_ANYWHERE'" in error and "\n" not in error
        assert "environment variable NOT_SET_ANYWHERE" in error
    finally:
        c.close()


def test_secrets_from_files(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "DB_PASSWORD").write_text(PASSWORD + "\n")
    (folder / "API_TOKEN").write_text(TOKEN)
    c = Cluster(tmp_path, extra_env={"DAGFLOW_SECRETS": folder.as_uri()})
    try:
        c.worker("a")
        dag = make_dag(
            [task("login", "test.secret_use", params={"password": {"secret": "DB_PASSWORD"}})],
            name="file_secrets",
            params={"token": {"secret": "API_TOKEN"}},
        )
        handle = c.runner.submit(dag)
        assert handle.wait(timeout=TIMEOUT).status == "success"
        login = handle.outputs(["login"])["login"]
        assert login["password_sha256"] == _digest(PASSWORD)
        assert login["token_sha256"] == _digest(TOKEN)
    finally:
        c.close()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_"))}
    return subprocess.run(
        [sys.executable, "-m", "dagflow", *args],
        cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_bad_secret_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    dag = tmp_path / "d.yaml"
    dag.write_text(
        "name: d\ntenant_id: t\nparams: {token: null}\ntasks:\n"
        "  - {id: a, workflow_ref: inbox_drive_sweep, params: {pw: {secret: 'bad/name'}}}\n"
    )
    env = {"ORCH_EVENTS_PATH": str(tmp_path / "e.jsonl")}
    proc = cli("plan", str(dag), env=env)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "task 'a', field 'params.pw'" in line and "bad/name" in line
    dag.write_text(
        "name: d\ntenant_id: t\nparams: {token: null}\ntasks:\n"
        "  - {id: a, workflow_ref: inbox_drive_sweep}\n"
    )
    proc = cli("run", str(dag), "--param", "token={secret: ../etc/passwd}", env=env)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "field 'params.token'" in line and "secret name" in line


def test_plan_warns_about_large_inline_params(tmp_path: Path) -> None:
    dag = tmp_path / "big.yaml"
    blob = "x" * 70_000
    dag.write_text(
        "name: big\ntenant_id: t\ntasks:\n"
        f"  - {{id: a, workflow_ref: inbox_drive_sweep, params: {{blob: '{blob}'}}}}\n"
    )
    proc = cli("plan", str(dag), env={"ORCH_EVENTS_PATH": str(tmp_path / "e.jsonl")})
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("warning: DAG 'big' has") and "task 'a'" in line
    assert "DRY RUN" in proc.stdout
