"""The HTTP API as a client sees it: ``dagflow api`` as a real process, real HTTP, real
Redis and the session's real ``celery -A dagflow worker``.

One server serves the whole module, with a DAGs folder of its own: tenant A's and tenant B's
DAGs, a slow one (for live events and cancel), a failing one (for retry) and an invalid one.
Tokens are made with ``dagflow tokens create`` and all revoked at the end, so the session's
database is left with no token in use.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_server import Reply, call, create_token, start_api, stop_api
from tests.support.processes import ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

DAGS = {
    "a.yaml": (
        "name: api_a\ntenant_id: tenant-a\nparams: {tag: null}\n"
        "tasks:\n  - {id: one, workflow_ref: test.echo, params: {x: 1}}\n"
    ),
    "b.yaml": (
        "name: api_b\ntenant_id: tenant-b\n"
        "tasks:\n  - {id: one, workflow_ref: test.echo, params: {x: 2}}\n"
    ),
    "slow.yaml": (
        "name: api_slow\ntenant_id: tenant-a\ntasks:\n"
        "  - {id: first, workflow_ref: test.sleep, params: {seconds: 1.0}}\n"
        "  - {id: second, workflow_ref: test.sleep, params: {seconds: 0.5}, depends_on: [first]}\n"
    ),
    "fail.yaml": (
        "name: api_fail\ntenant_id: tenant-a\n"
        "tasks:\n  - {id: boom, workflow_ref: test.fail, params: {message: nope}}\n"
    ),
    "page.yaml": (
        "name: api_page\ntenant_id: tenant-a\ntasks:\n  - {id: one, workflow_ref: test.echo}\n"
    ),
    "events.yaml": (
        "name: api_events\ntenant_id: tenant-a\nparams: {batch: null}\n"
        "triggers: [{event: orders.loaded}]\n"
        "tasks:\n  - {id: one, workflow_ref: test.echo}\n"
    ),
    "events_b.yaml": (
        "name: api_events_b\ntenant_id: tenant-b\ntriggers: [{event: orders.loaded}]\n"
        "tasks:\n  - {id: one, workflow_ref: test.echo}\n"
    ),
    "bad.yaml": (
        "name: api_bad\ntenant_id: tenant-a\n"
        "tasks:\n  - {id: one, workflow_ref: no.such.workflow}\n"
    ),
}


class Api:
    """The module's server and its tokens."""

    def __init__(self, base: str, env: dict[str, str], tokens: dict[str, tuple[str, str]]):
        self.base = base
        self.env = env
        self.tokens = tokens

    def token(self, who: str) -> str:
        return self.tokens[who][1]

    def __call__(self, method: str, path: str, who: str | None = None, **kwargs: Any) -> Reply:
        token = self.token(who) if who else None
        return call(self.base, method, "/api/v1" + path, token=token, **kwargs)

    def start(self, who: str, dag: str, **body: Any) -> str:
        reply = self("POST", "/runs", who, body={"dag": dag, **body})
        assert reply.status == 201, reply.text
        return str(reply.body["run_id"])

    def wait_ended(self, who: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def ended() -> bool:
            seen.update(self("GET", f"/runs/{run_id}", who).body)
            return seen["status"] in ("success", "failed", "cancelled")

        wait_for(ended, timeout, f"run {run_id} ended")
        return seen


def tokens_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagflow", "tokens", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def api(
    redis_env: dict[str, str],
    celery_worker_proc: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("api")
    dags = folder / "dags"
    dags.mkdir()
    for name, text in DAGS.items():
        (dags / name).write_text(text)
    env = {**redis_env, "DAGFLOW_DAGS_DIR": str(dags)}
    tokens = {
        "a": create_token(env, "--tenant", "tenant-a"),
        "b": create_token(env, "--tenant", "tenant-b"),
        "admin": create_token(env, "--admin"),
    }
    proc, base = start_api(env, folder / "api.log")
    try:
        yield Api(base, env, tokens)
    finally:
        stop_api(proc)
        listed = json.loads(tokens_cli(env, "list", "--json").stdout)
        for token in listed:
            if token["revoked_at"] is None:
                tokens_cli(env, "revoke", token["id"])
        log = (folder / "api.log").read_text(errors="replace")
        # Whatever happened, no traceback was ever sent to a client (only the log has them).
        assert "internal error" not in log, log


def test_a_tenant_token_cannot_read_cancel_retry_or_list_another_tenants_run(api: Api) -> None:
    # Given a run of tenant B's DAG, started with B's token, and one of A's
    b_run = api.start("b", "api_b")
    a_run = api.start("a", "api_a")
    assert api.wait_ended("b", b_run)["status"] == "success"
    api.wait_ended("a", a_run)
    # When A's token asks for it, in every way, it does not exist (404, never its data)
    for method, path in [
        ("GET", f"/runs/{b_run}"),
        ("GET", f"/runs/{b_run}/outputs"),
        ("GET", f"/runs/{b_run}/events"),
        ("POST", f"/runs/{b_run}/cancel"),
        ("POST", f"/runs/{b_run}/retry"),
    ]:
        reply = api(method, path, "a")
        assert reply.status == 404, (method, path, reply.text)
        assert reply.body["error"]["code"] == "run_not_found"
        assert "tenant-b" not in reply.text and "api_b" not in reply.text
    # and does not list it, and may not ask for B's listing
    listed = api("GET", "/runs?limit=200", "a").body["runs"]
    assert a_run in {r["run_id"] for r in listed}
    assert {r["tenant_id"] for r in listed} == {"tenant-a"}
    assert api("GET", "/runs?tenant=tenant-b", "a").status == 403
    # and cannot start B's DAG: answered as a DAG that does not exist
    reply = api("POST", "/runs", "a", body={"dag": "api_b"})
    assert reply.status == 404 and reply.body["error"]["field"] == "dag"
    assert [d["name"] for d in api("GET", "/dags", "a").body["dags"]] == [
        "api_a", "api_events", "api_fail", "api_page", "api_slow",
    ]  # fmt: skip
    # Then B's own token and the admin token see it
    assert api("GET", f"/runs/{b_run}", "b").body["tenant_id"] == "tenant-b"
    assert api("GET", f"/runs/{b_run}/outputs", "b").body["one"]["params"]["x"] == 2
    both = {r["run_id"] for r in api("GET", "/runs?limit=200", "admin").body["runs"]}
    assert {a_run, b_run} <= both
    assert api("GET", f"/runs/{a_run}", "admin").status == 200


def test_a_missing_invalid_or_revoked_token_is_401(api: Api) -> None:
    # Given no token, a malformed one, a well-formed unknown one, and another scheme
    well_formed = "dfk_000000000000_" + "x" * 43
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {well_formed}"},
        {"Authorization": f"Basic {api.token('admin')}"},
    ):
        reply = call(api.base, "GET", "/api/v1/runs", headers=headers)
        assert reply.status == 401, headers
        assert reply.body["error"]["code"] == "unauthorized"
        assert reply.headers["www-authenticate"] == "Bearer"
    # When a token that works is revoked with the CLI
    token_id, token = create_token(api.env, "--tenant", "tenant-a")
    assert call(api.base, "GET", "/api/v1/runs", token=token).status == 200
    revoked = tokens_cli(api.env, "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    # Then it is refused at once, and the listing says so without showing any secret
    assert call(api.base, "GET", "/api/v1/runs", token=token).status == 401
    listed = tokens_cli(api.env, "list", "--json")
    assert token.split("_")[2] not in listed.stdout
    record = next(t for t in json.loads(listed.stdout) if t["id"] == token_id)
    assert record["revoked_at"] is not None and record["tenant"] == "tenant-a"
    assert tokens_cli(api.env, "revoke", "ffffffffffff").returncode == 3
    # and health and the OpenAPI document need no token
    assert call(api.base, "GET", "/api/v1/health").status == 200


def test_one_idempotency_key_starts_one_run_under_20_concurrent_posts(api: Api) -> None:
    # Given 20 threads that send the same POST with the same key at the same moment
    key = f"key-{time.monotonic_ns()}"
    barrier = threading.Barrier(20)
    replies: list[Reply] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        reply = api("POST", "/runs", "a", body={"dag": "api_a", "idempotency_key": key})
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then one started the run (201), the 19 others answered with the same run (200)
    assert sorted(r.status for r in replies) == [200] * 19 + [201], [r.text for r in replies]
    run_ids = {r.body["run_id"] for r in replies}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    api.wait_ended("a", run_id)
    runs = api("GET", "/runs?dag=api_a&limit=200", "a").body["runs"]
    assert [r["run_id"] for r in runs if r["labels"].get("idempotency_key") == key] == [run_id]
    # and the key sent again later still answers with it, while other params are a 409
    again = api("POST", "/runs", "a", body={"dag": "api_a", "idempotency_key": key})
    assert (again.status, again.body) == (200, {"run_id": run_id})
    other = api(
        "POST", "/runs", "a", body={"dag": "api_a", "idempotency_key": key, "params": {"tag": 1}}
    )
    assert other.status == 409 and other.body["error"]["field"] == "idempotency_key"


def _sse(api: Api, run_id: str, who: str) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """(seconds since connecting, event name, data) of each server-sent event."""
    host, port = api.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    conn.request(
        "GET",
        f"/api/v1/runs/{run_id}/events",
        headers={"Authorization": f"Bearer {api.token(who)}", "Accept": "text/event-stream"},
    )
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    name, data = "", ""
    while True:
        line = response.readline()
        if not line:  # the server ended the stream
            conn.close()
            return
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            name = text[7:]
        elif text.startswith("data: "):
            data = text[6:]
        elif text == "" and name:
            yield time.monotonic() - started, name, json.loads(data)
            name, data = "", ""


def test_server_sent_events_stream_a_run_live_and_end_when_it_ends(api: Api) -> None:
    # Given a run of two sleeping tasks (1 s, then 0.5 s)
    run_id = api.start("a", "api_slow")
    # When a client asks for its events as a stream at once
    events = list(_sse(api, run_id, "a"))
    # Then it gets them as they happen, in order, then "end", and the server closes it
    names = [name for _, name, _ in events]
    assert names == [
        "dag_start", "task_start", "task_ok", "task_start", "task_ok", "dag_done", "end",
    ], names  # fmt: skip
    at = {(name, data.get("task_id")): t for t, name, data in events}
    assert at[("task_ok", "first")] >= 0.7  # sent when it happened, not all at the end
    assert at[("dag_done", None)] - at[("task_ok", "first")] >= 0.4
    assert events[-1][2] == {"run_id": run_id, "status": "success"}
    assert all(data["run_id"] == run_id for _, _, data in events)
    # and the JSON list of the ended run has the same events, each with its event_id
    listed = api("GET", f"/runs/{run_id}/events", "a").body
    assert [e["event"] for e in listed] == names[:-1]
    assert all(e["event_id"] for e in listed)
    # and a stream of an ended run sends its events and ends at once
    again = list(_sse(api, run_id, "a"))
    assert [name for _, name, _ in again] == names and again[-1][0] < 5


def test_bad_requests_are_4xx_in_the_error_shape_naming_the_field(api: Api, tmp_path: Path) -> None:
    def error(reply: Reply, status: int, code: str, field: str | None) -> dict[str, Any]:
        assert reply.status == status, reply.text
        assert set(reply.body) == {"error"}, reply.text
        assert (reply.body["error"]["code"], reply.body["error"]["field"]) == (code, field)
        assert "Traceback" not in reply.text
        return dict(reply.body["error"])

    post = lambda body, **kw: api("POST", "/runs", "a", body=body, **kw)  # noqa: E731
    error(post({"dag": "api_a", "extra": 1}), 422, "invalid_request", "extra")
    error(post({"dag": 5}), 422, "invalid_request", "dag")
    error(post({"params": {}}), 422, "invalid_request", "dag")
    error(post({"dag": "api_a", "params": [1]}), 422, "invalid_request", "params")
    error(post({"dag": "nope"}), 404, "unknown_dag", "dag")
    bad = error(post({"dag": "api_bad"}), 422, "invalid_dag", "dag")
    assert "bad.yaml" in bad["message"] and "no.such.workflow" in bad["message"]
    params = error(
        post({"dag": "api_a", "params": {"day": 1}}), 422, "invalid_params", "params.day"
    )
    assert "tag" in params["message"]  # it names the params the DAG declares
    error(api("POST", "/runs", "a", data=b"{not json", headers={"Content-Type": "application/json"}), 400, "invalid_json", None)  # fmt: skip
    error(api("POST", "/runs", "a", data=b'{"dag": "api_a"}'), 415, "unsupported_media_type", None)
    big = json.dumps({"dag": "api_a", "params": {"tag": "x" * 1_100_000}}).encode()
    error(api("POST", "/runs", "a", data=big, headers={"Content-Type": "application/json"}), 413, "body_too_large", None)  # fmt: skip
    error(api("GET", "/runs?limit=0", "a"), 422, "invalid_request", "limit")
    error(api("GET", "/runs?status=weird", "a"), 422, "invalid_request", "status")
    error(api("GET", "/runs?cursor=@@", "a"), 422, "invalid_request", "cursor")
    error(api("GET", "/nothing/here", "a"), 404, "not_found", None)
    error(api("DELETE", "/runs", "a"), 405, "method_not_allowed", None)


def test_the_openapi_document_lists_every_path(api: Api) -> None:
    reply = call(api.base, "GET", "/api/v1/openapi.json")
    assert reply.status == 200 and reply.body["openapi"].startswith("3.")
    assert set(reply.body["paths"]) == {
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/outputs",
        "/api/v1/runs/{run_id}/cancel",
        "/api/v1/runs/{run_id}/retry",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/dags",
        "/api/v1/jobs",
        "/api/v1/schedules",
        "/api/v1/health",
        "/api/v1/events/{name}",
        "/api/v1/backfills",
    }
    assert "HTTPBearer" in reply.body["components"]["securitySchemes"]


def test_status_and_outputs_are_what_the_cli_shows(api: Api) -> None:
    run_id = api.start("a", "api_a", params={"tag": "t1"})
    api.wait_ended("a", run_id)
    cli = subprocess.run(
        [sys.executable, "-m", "dagflow", "status", run_id, "--json"],
        cwd=ROOT, env=api.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert api("GET", f"/runs/{run_id}", "a").body == json.loads(cli.stdout)
    cli = subprocess.run(
        [sys.executable, "-m", "dagflow", "outputs", run_id],
        cwd=ROOT, env=api.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert api("GET", f"/runs/{run_id}/outputs", "a").body == json.loads(cli.stdout)
    assert api("GET", f"/runs/{run_id}", "a").body["labels"]["api_token"] == api.tokens["a"][0]


def test_cancel_and_retry(api: Api) -> None:
    # A running run is cancelled; cancelling it again says it already ended
    run_id = api.start("a", "api_slow")
    wait_for(lambda: api("GET", f"/runs/{run_id}", "a").body["counts"]["total"] > 0)
    reply = api("POST", f"/runs/{run_id}/cancel", "a")
    assert reply.status == 200 and reply.body["already_ended"] is False
    assert api.wait_ended("a", run_id)["status"] == "cancelled"
    assert api("POST", f"/runs/{run_id}/cancel", "a").body["already_ended"] is True
    # A failed run is retried: a new run, linked to the old one; a succeeded one is a 409
    failed = api.start("a", "api_fail")
    assert api.wait_ended("a", failed)["status"] == "failed"
    reply = api("POST", f"/runs/{failed}/retry", "a")
    assert reply.status == 201 and reply.body["retry_of"] == failed
    assert reply.headers["location"] == f"/api/v1/runs/{reply.body['run_id']}"
    again = api.wait_ended("a", reply.body["run_id"])
    assert again["labels"]["retry_of"] == failed
    ok = api.start("a", "api_a")
    api.wait_ended("a", ok)
    refused = api("POST", f"/runs/{ok}/retry", "a")
    assert refused.status == 409 and refused.body["error"]["code"] == "not_retryable"


def test_runs_are_listed_page_by_page_with_a_cursor(api: Api) -> None:
    started = [api.start("a", "api_page") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        path = "/runs?dag=api_page&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api("GET", path, "a").body
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(started)  # each once, newest first
    assert seen == [
        r["run_id"] for r in api("GET", "/runs?dag=api_page&limit=10", "a").body["runs"]
    ]


def test_jobs_and_schedules_are_filtered_to_the_tenant(api: Api) -> None:
    assert api("GET", "/jobs", "a").status == 200
    assert api("GET", "/jobs?tenant=tenant-b", "a").status == 403
    assert api("GET", "/jobs?status=bogus", "a").status == 422
    # The repository's schedules are local-dev's: tenant A sees none, the admin sees them
    assert api("GET", "/schedules", "a").body["schedules"] == []
    admin = api("GET", "/schedules", "admin").body
    assert {s["tenant"] for s in admin["schedules"]} == {"local-dev"}
    assert admin["errors"] == []


def test_an_event_posted_five_times_starts_one_run_of_the_tenants_dag(api: Api) -> None:
    # Given tenant A's and tenant B's DAGs both triggered by orders.loaded
    body = {"id": "evt-1", "data": {"batch": "b7"}}
    # When tenant A posts the same event five times
    replies = [api("POST", "/events/orders.loaded", "a", body=body) for _ in range(5)]
    # Then only A's DAG started, once, with the data as its params; repeats name that run
    assert {r.status for r in replies} == {200}
    runs = [r.body["runs"] for r in replies]
    assert [len(r) for r in runs] == [1] * 5
    assert runs[0][0]["dag"] == "api_events" and runs[0][0]["started"] is True
    assert {r[0]["run_id"] for r in runs} == {runs[0][0]["run_id"]}
    assert [r[0]["started"] for r in runs[1:]] == [False] * 4
    run = api.wait_ended("a", runs[0][0]["run_id"])
    assert run["status"] == "success"
    # and an admin's event reaches both tenants' DAGs; bad data names its field
    both = api("POST", "/events/orders.loaded", "admin", body={"id": "evt-2"}).body["runs"]
    assert sorted(r["dag"] for r in both) == ["api_events", "api_events_b"]
    bad = api("POST", "/events/orders.loaded", "a", body={"id": "evt-3", "data": {"bacth": 1}})
    assert bad.status == 422 and bad.body["error"]["field"].startswith("params.")


def test_a_backfill_is_planned_for_the_schedules_tenant_only(api: Api) -> None:
    # The repository's schedule weekly_ops_chain (every 5 minutes) is local-dev's
    body = {"schedule": "weekly_ops_chain", "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-01T01:00:00Z", "dry_run": True}  # fmt: skip
    assert api("POST", "/backfills", "a", body=body).status == 404
    reply = api("POST", "/backfills", "admin", body=body)
    assert reply.status == 201, reply.text
    minutes = reply.body["minutes"]
    assert len(minutes) == 12 and {m["state"] for m in minutes} == {"planned"}
    bad = api("POST", "/backfills", "admin", body={**body, "from": "yesterday"})
    assert bad.status == 422 and bad.body["error"]["field"] == "from"
