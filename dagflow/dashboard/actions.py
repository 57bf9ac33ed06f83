"""Cancel and Retry on the run page, Re-run on failed jobs: a POST route guarded against
cross-site requests.

The buttons exist only where someone is known to be at the keyboard: with basic auth on
(``DAGFLOW_DASHBOARD_AUTH``) or on a dashboard bound to localhost. Each button is a plain
HTML form that POSTs to ``/actions/<run_id>/<cancel|retry>`` with a token the page embeds
(an HMAC of the run and action under a secret made when the app starts), and the route
refuses a request whose token is missing or wrong or whose ``Origin`` (else ``Referer``)
is another site. When the HTTP API's tokens are in use (at least one is active, see
:mod:`dagflow.stores.tokens`), the route also needs one of them, in the form's ``api_token``
field (the page then shows it) or an ``Authorization: Bearer`` header, and follows the API's
tenancy rules: no token or a bad one is a 401, another tenant's run or job a 404, as the
API answers. The route calls the library (:func:`dagflow.get_run`,
:func:`dagflow.scheduling.job_hooks.rerun_job`) and redirects to the run's page, or to the
new run's page after a retry or a job's re-run.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any
from urllib.parse import quote, urlsplit

from dash import dcc, html
from flask import Flask, Response, redirect, request

from dagflow.errors import DagflowError
from dagflow.settings import Settings
from dagflow.stores.tokens import TokenStore

#: Addresses that only this machine can reach.
LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
#: The run statuses (of the dashboard's timeline) each action applies to.
ACTION_STATUSES = {"cancel": ("running", "stale"), "retry": ("failed", "cancelled")}
#: The route's path; ``<run_id>`` and ``<action>`` are filled in.
ROUTE = "/actions/<path:run_id>/<action>"
#: Seconds the dashboard trusts its last look at whether API tokens are in use (for drawing
#: the token field; the route itself always looks again).
TOKENS_IN_USE_CACHE_S = 10.0


def cancel_run(settings: Settings, run_id: str) -> str:
    """Cancel ``run_id`` through the library; the run whose page to show next (the same)."""
    from dagflow.client.runner import get_run

    get_run(run_id, settings=settings, timeout=5).cancel()
    return run_id


def retry_run(settings: Settings, run_id: str) -> str:
    """Retry ``run_id`` through the library; the new run's id."""
    from dagflow.client.runner import get_run

    return get_run(run_id, settings=settings, timeout=5).retry().run_id


def rerun_job(settings: Settings, job_id: str) -> str:
    """Give the FAILED job ``job_id`` one more try through the library; the new run's id."""
    from dagflow.client.runner import Runner
    from dagflow.scheduling.job_hooks import rerun_job as rerun

    runner = Runner(settings)
    try:
        return rerun(runner.app, runner.runtime, job_id)
    finally:
        runner.close(wait=False)


def run_tenant(settings: Settings, run_id: str) -> str | None:
    """The tenant of run ``run_id`` (None if it is unknown)."""
    from dagflow.client.runner import get_run

    try:
        snap = get_run(run_id, settings=settings, timeout=5).snapshot()
    except DagflowError:
        return None
    return str(snap.meta.get("tenant_id") or "") or None if snap else None


def job_tenant(settings: Settings, job_id: str) -> str | None:
    """The tenant of job ``job_id`` (None if it is unknown)."""
    from dagflow.scheduling.job_hooks import job_store

    store = job_store(settings)
    try:
        job = store.get(job_id)
    finally:
        store.close()
    return job.tenant_id if job else None


Action = Callable[[Settings, str], str]
#: The tenant of what an action acts on (a run, a job), or None if it is unknown.
TenantOf = Callable[[Settings, str], "str | None"]


@dataclass
class TokenCheck:
    """The HTTP API's tokens, as the dashboard's actions apply them (see the module doc).

    Attributes:
        store: Where the tokens are.
        tenants: The tenant of what each action acts on.
    """

    store: TokenStore
    tenants: dict[str, TenantOf] = field(
        default_factory=lambda: {"cancel": run_tenant, "retry": run_tenant, "rerun_job": job_tenant}
    )
    _seen: tuple[float, bool] = (0.0, False)

    def in_use(self, fresh: bool = False) -> bool:
        """True when at least one API token is active (cached a few seconds unless ``fresh``)."""
        at, used = self._seen
        if fresh or time.monotonic() - at > TOKENS_IN_USE_CACHE_S:
            used = self.store.in_use()
            self._seen = (time.monotonic(), used)
        return used


@dataclass(frozen=True)
class ActionGuard:
    """Whether the run page offers actions, and the secret its tokens are made with.

    Attributes:
        enabled: Basic auth is on or the dashboard is bound to localhost, and runs live in
            a Redis run store (an embedded run cannot be reached from here).
        secret: Made when the app starts; tokens do not outlive the process.
        actions: What each action calls (tests pass fakes).
    """

    enabled: bool
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    actions: dict[str, Action] = field(
        default_factory=lambda: {"cancel": cancel_run, "retry": retry_run, "rerun_job": rerun_job}
    )
    tokens: TokenCheck | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> ActionGuard:
        """Actions on when auth is on or the bind address is local, and runs are in Redis;
        the API's tokens apply when runs are in Redis."""
        from dagflow.wiring import token_store

        trusted = bool(settings.dashboard_auth) or settings.dashboard_host in LOCAL_HOSTS
        enabled = trusted and not settings.embedded
        tokens = TokenCheck(token_store(settings)) if enabled else None
        return cls(enabled=enabled, tokens=tokens)

    def wants_api_token(self) -> bool:
        """True when the forms must carry an API token (some are in use)."""
        if self.tokens is None:
            return False
        try:
            return self.tokens.in_use()
        except Exception:  # Redis away: the route decides, the page still draws
            return False

    def token(self, run_id: str, action: str) -> str:
        """The token a page embeds to allow ``action`` on ``run_id``."""
        return hmac.new(self.secret, f"{action}\0{run_id}".encode(), sha256).hexdigest()

    def check(self, run_id: str, action: str, token: str | None) -> bool:
        """True when ``token`` allows ``action`` on ``run_id`` (constant-time compare)."""
        return hmac.compare_digest((token or "").encode(), self.token(run_id, action).encode())


def action_href(run_id: str, action: str) -> str:
    """The route a button POSTs to."""
    return f"/actions/{quote(run_id, safe='')}/{action}"


def _token_field(guard: ActionGuard) -> list[Any]:
    """The API token input of an action's form, when tokens are in use."""
    if not guard.wants_api_token():
        return []
    return [dcc.Input(type="password", name="api_token", placeholder="API token")]


def buttons(guard: ActionGuard | None, run_id: str, run_status: str) -> list[Any]:
    """The forms for the actions that apply to a run in ``run_status`` (none when off)."""
    if guard is None or not guard.enabled:
        return []
    forms = []
    for action, statuses in ACTION_STATUSES.items():
        if run_status not in statuses:
            continue
        forms.append(
            html.Form(
                [
                    dcc.Input(type="hidden", name="token", value=guard.token(run_id, action)),
                    *_token_field(guard),
                    html.Button(action.capitalize(), type="submit", id=f"{action}-button"),
                ],
                action=action_href(run_id, action),
                method="POST",
                id=f"{action}-form",
                style={"display": "inline-block", "marginRight": "8px"},
            )
        )
    return [html.Div(forms, id="run-actions", style={"margin": "8px 0"})] if forms else []


def job_buttons(guard: ActionGuard | None, job_ids: list[str]) -> list[Any]:
    """A Re-run form for each FAILED job of the queue panel (none when actions are off)."""
    if guard is None or not guard.enabled or not job_ids:
        return []
    forms = [
        html.Form(
            [
                dcc.Input(type="hidden", name="token", value=guard.token(job_id, "rerun_job")),
                *_token_field(guard),
                html.Button(f"Re-run job {job_id[:12]}", type="submit", id=f"rerun-{job_id}"),
            ],
            action=action_href(job_id, "rerun_job"),
            method="POST",
            style={"display": "inline-block", "marginRight": "8px"},
        )
        for job_id in job_ids
    ]
    return [html.Div(forms, id="job-actions", style={"margin": "8px 0"})]


def _same_origin() -> bool:
    """The request comes from this dashboard's own pages (by ``Origin``, else ``Referer``)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def _api_token_refusal(
    guard: ActionGuard, settings: Settings, target: str, action: str
) -> Response | None:
    """None when the API's token rules allow ``action`` on ``target``, else the refusal."""
    if guard.tokens is None or not guard.tokens.in_use(fresh=True):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    token = given.strip() if scheme.lower() == "bearer" else ""
    token = token or str(request.form.get("api_token") or "").strip()
    who = guard.tokens.store.authenticate(token) if token else None
    if who is None:
        return Response("API tokens are in use: give a valid one (api_token)\n", 401)
    if not who.may_see(guard.tokens.tenants[action](settings, target)):
        return Response("Not found\n", 404)
    return None


def install_actions(server: Flask, settings: Settings, guard: ActionGuard) -> None:
    """Add the POST route of the run page's actions to ``server`` (403 whenever refused)."""

    def act(run_id: str, action: str) -> Response:
        if not guard.enabled:
            return Response("Actions are off: turn on basic auth or bind to localhost\n", 403)
        if action not in guard.actions:
            return Response(f"Unknown action {action!r}\n", 404)
        if not _same_origin():
            return Response("Cross-site request refused\n", 403)
        if not guard.check(run_id, action, request.form.get("token")):
            return Response("Missing or wrong token: reload the run page\n", 403)
        refused = _api_token_refusal(guard, settings, run_id, action)
        if refused is not None:
            return refused
        try:
            target = guard.actions[action](settings, run_id)
        except DagflowError as exc:
            return Response(f"{action} of {run_id} refused: {exc}\n", 409)
        return redirect(f"/runs/{quote(target, safe='')}", code=303)  # type: ignore[return-value]

    server.add_url_rule(ROUTE, "dagflow_run_action", act, methods=["POST"])
