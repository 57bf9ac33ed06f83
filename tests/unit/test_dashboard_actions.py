"""The run page's Cancel and Retry: who sees them, and the POST route's CSRF guard."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dagflow.dashboard.actions import ActionGuard, action_href, buttons
from dagflow.dashboard.app import create_app
from dagflow.dashboard.callbacks import DashboardData, render_route
from dagflow.errors import RunnerError
from dagflow.settings import Settings
from tests.unit.test_dashboard_callbacks import NOW, find, settings  # noqa: F401

ORIGIN = "http://localhost"
BROKER = "redis://127.0.0.1:1/0"


class Calls:
    """Fake library calls: what was asked, and the new run a retry returns."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def cancel(self, _settings: Settings, run_id: str) -> str:
        self.seen.append(("cancel", run_id))
        return run_id

    def retry(self, _settings: Settings, run_id: str) -> str:
        self.seen.append(("retry", run_id))
        if run_id == "running-run":
            raise RunnerError(f"run {run_id} is still running")
        return "new-run"


@pytest.fixture
def calls() -> Calls:
    return Calls()


def app_for(base: Settings, calls: Calls, **changes: Any) -> tuple[Any, ActionGuard]:
    """The dashboard app with fake library calls, and its guard."""
    changed = dataclasses.replace(base, broker_url=BROKER, **changes)
    enabled = ActionGuard.for_settings(changed).enabled
    guard = ActionGuard(enabled=enabled, actions={"cancel": calls.cancel, "retry": calls.retry})
    return create_app(changed, clock=lambda: NOW, guard=guard), guard


def test_token_is_per_run_and_action_and_per_app() -> None:
    one, two = ActionGuard(enabled=True), ActionGuard(enabled=True)
    assert one.check("r1", "retry", one.token("r1", "retry"))
    assert not one.check("r1", "cancel", one.token("r1", "retry"))
    assert not one.check("r2", "retry", one.token("r1", "retry"))
    assert not one.check("r1", "retry", two.token("r1", "retry"))
    assert not one.check("r1", "retry", None)


@pytest.mark.parametrize(
    ("host", "auth", "broker", "enabled"),
    [
        ("127.0.0.1", None, BROKER, True),
        ("::1", None, BROKER, True),
        ("0.0.0.0", None, BROKER, False),  # reachable by others, nobody logged in
        ("0.0.0.0", "ops:secret", BROKER, True),
        ("127.0.0.1", None, None, False),  # embedded: runs live in another process
    ],
)
def test_actions_only_with_auth_or_on_localhost(
    host: str, auth: str | None, broker: str | None, enabled: bool
) -> None:
    given = Settings(dashboard_host=host, dashboard_auth=auth, broker_url=broker)
    assert ActionGuard.for_settings(given).enabled is enabled


def test_buttons_follow_the_run_status() -> None:
    guard = ActionGuard(enabled=True)
    assert find(buttons(guard, "r", "failed"), "retry-form") is not None
    assert find(buttons(guard, "r", "failed"), "cancel-form") is None
    assert find(buttons(guard, "r", "running"), "cancel-form") is not None
    assert buttons(guard, "r", "success") == []
    assert buttons(ActionGuard(enabled=False), "r", "failed") == []
    assert buttons(None, "r", "failed") == []


def test_failed_run_page_has_a_retry_form_with_its_token(
    settings: Settings,  # noqa: F811
    calls: Calls,
) -> None:
    guard = ActionGuard(enabled=True)
    data = DashboardData.from_settings(settings, clock=lambda: NOW, guard=guard)
    result = render_route(data, "/runs/r1")
    assert result is not None
    form = find(result[2], "retry-form")
    assert form.action == action_href("r1", "retry") and form.method == "POST"
    assert form.children[0].value == guard.token("r1", "retry")
    assert find(result[2], "cancel-form") is None


def test_retry_with_token_and_origin_redirects_to_the_new_run(
    settings: Settings,  # noqa: F811
    calls: Calls,
) -> None:
    app, guard = app_for(settings, calls)
    client = app.server.test_client()
    response = client.post(
        "/actions/r1/retry",
        data={"token": guard.token("r1", "retry")},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/runs/new-run")
    assert calls.seen == [("retry", "r1")]


def test_route_refuses_missing_or_wrong_token_and_wrong_origin(
    settings: Settings,  # noqa: F811
    calls: Calls,
) -> None:
    app, guard = app_for(settings, calls)
    client = app.server.test_client()
    good = guard.token("r1", "retry")
    assert client.post("/actions/r1/retry", headers={"Origin": ORIGIN}).status_code == 403
    wrong = {"token": guard.token("r1", "cancel")}
    assert (
        client.post("/actions/r1/retry", data=wrong, headers={"Origin": ORIGIN}).status_code == 403
    )
    evil = {"Origin": "http://evil.example"}
    assert client.post("/actions/r1/retry", data={"token": good}, headers=evil).status_code == 403
    # Neither Origin nor Referer: refused (a browser sends one on a form POST)
    assert client.post("/actions/r1/retry", data={"token": good}).status_code == 403
    referer = {"Referer": f"{ORIGIN}/runs/r1"}
    assert (
        client.post("/actions/r1/retry", data={"token": good}, headers=referer).status_code == 303
    )
    assert calls.seen == [("retry", "r1")]


def test_route_says_why_the_library_refused(
    settings: Settings,  # noqa: F811
    calls: Calls,
) -> None:
    app, guard = app_for(settings, calls)
    client = app.server.test_client()
    token = guard.token("running-run", "retry")
    response = client.post(
        "/actions/running-run/retry", data={"token": token}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 409
    assert "still running" in response.get_data(as_text=True)


def test_not_localhost_and_no_auth_hides_buttons_and_refuses(
    settings: Settings,  # noqa: F811
    calls: Calls,
) -> None:
    app, guard = app_for(settings, calls, dashboard_host="0.0.0.0")
    assert buttons(guard, "r1", "failed") == []
    client = app.server.test_client()
    response = client.post(
        "/actions/r1/retry", data={"token": guard.token("r1", "retry")}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 403
    assert calls.seen == []
