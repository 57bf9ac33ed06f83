"""Pieces of the HTTP API that need no server: the DAG catalog, the cursor, the error guard
(an exception is a JSON 500 without its traceback), and the dashboard's token rule."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from dagflow.api.errors import GuardMiddleware
from dagflow.api.runs import decode_cursor, encode_cursor
from dagflow.dag.catalog import DagCatalog
from dagflow.errors import ApiError
from dagflow.settings import Settings
from dagflow.stores.tokens import MemoryTokenStore

GOOD = "name: {name}\ntenant_id: acme\ntasks:\n  - {{id: one, workflow_ref: inbox_drive_sweep}}\n"


def test_the_catalog_finds_dags_by_name_and_reports_bad_files(tmp_path: Path) -> None:
    # Given a good DAG, one with an unknown workflow, one that is not YAML, and a duplicate
    (tmp_path / "a.yaml").write_text(GOOD.format(name="alpha"))
    (tmp_path / "b.yaml").write_text(GOOD.format(name="beta").replace("inbox_drive_sweep", "nope"))
    (tmp_path / "c.yml").write_text("name: [unclosed\n")
    (tmp_path / "d.yaml").write_text(GOOD.format(name="alpha"))
    (tmp_path / "notes.txt").write_text("not a DAG")
    catalog = DagCatalog(tmp_path, Settings())
    # Then the good one is found by name, the others by name (or file stem) with their error
    alpha = catalog.find("alpha")
    assert alpha is not None and alpha.dag is not None and alpha.path.name == "a.yaml"
    beta = catalog.find("beta")
    assert beta is not None and beta.dag is None and beta.tenant_id == "acme"
    assert beta.error is not None and "Unknown workflow: nope" in beta.error.one_line()
    broken = catalog.find("c")
    assert broken is not None and broken.error is not None and "malformed YAML" in str(broken.error)
    assert catalog.find("nope") is None
    assert [d.name for d in catalog.dags()] == ["alpha"]
    duplicate = next(e for e in catalog.entries() if e.path.name == "d.yaml")
    assert duplicate.error is not None and "duplicate DAG name" in str(duplicate.error)
    # When a file is fixed, the next lookup sees it
    (tmp_path / "b.yaml").write_text(GOOD.format(name="beta") + "# fixed\n")
    fixed = catalog.find("beta")
    assert fixed is not None and fixed.dag is not None


def test_a_cursor_round_trips_and_a_bad_one_names_the_field() -> None:
    assert decode_cursor(encode_cursor((1_700_000_000_123, "abc"))) == (1_700_000_000_123, "abc")
    for bad in ("@@", "bm90IGEgY3Vyc29y", ""):
        with pytest.raises(ApiError) as caught:
            decode_cursor(bad)
        assert caught.value.field == "cursor" and caught.value.status == 422


def _serve(
    app: Any, method: str = "GET", body: bytes = b"", limit: int = 100
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [body[i : i + 10] for i in range(0, len(body), 10)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/api/v1/x", "headers": []}
    asyncio.run(GuardMiddleware(app, max_body=limit)(scope, receive, send))
    return sent


def test_an_exception_is_a_json_500_without_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    sent = _serve(broken)
    assert sent[0]["status"] == 500
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "internal" and body["error"]["field"] is None
    assert "secret" not in sent[1]["body"].decode() and "Traceback" not in sent[1]["body"].decode()
    assert "secret internals" in caplog.text  # the log has it, with its id
    incident = body["error"]["message"].split("id ")[1].split(",")[0]
    assert incident in caplog.text


def test_a_body_over_the_limit_is_413_even_without_a_length() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    assert _serve(echo, "POST", b"x" * 101)[0]["status"] == 413
    ok = _serve(echo, "POST", b"y" * 100)
    assert ok[0]["status"] == 200 and ok[1]["body"] == b"y" * 100


def test_the_dashboard_actions_follow_the_api_tokens() -> None:
    import dataclasses

    from dagflow.dashboard.actions import ActionGuard, TokenCheck
    from dagflow.dashboard.app import create_app
    from tests.unit.test_dashboard_actions import Calls

    store = MemoryTokenStore()
    calls = Calls()
    tenants = {"cancel": lambda _s, run: {"r-acme": "acme"}.get(run), "retry": lambda _s, _r: None}
    guard = ActionGuard(
        enabled=True,
        actions={"cancel": calls.cancel, "retry": calls.retry},
        tokens=TokenCheck(store, tenants),
    )
    settings = dataclasses.replace(Settings(), broker_url="redis://127.0.0.1:1/0")
    client = create_app(settings, guard=guard).server.test_client()

    def post(run: str, **form: str) -> int:
        data = {"token": guard.token(run, "cancel"), **form}
        headers = {"Origin": "http://localhost"}
        return int(client.post(f"/actions/{run}/cancel", data=data, headers=headers).status_code)

    # Without any token in use, the page's own token is enough (as before)
    assert post("r-acme") == 303
    assert not guard.wants_api_token()
    # Once a token exists, a valid one is needed, and only for its tenant's runs
    _, acme = store.create(tenant="acme", admin=False, now=1.0)
    _, beta = store.create(tenant="beta", admin=False, now=1.0)
    assert post("r-acme") == 401
    assert post("r-acme", api_token="dfk_bogus") == 401
    assert post("r-acme", api_token=beta) == 404
    assert post("r-acme", api_token=acme) == 303
    assert calls.seen == [("cancel", "r-acme"), ("cancel", "r-acme")]
