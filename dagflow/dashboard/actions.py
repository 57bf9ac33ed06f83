"""Cancel and Retry on the run page, Re-run on failed jobs: a POST route guarded against
cross-site requests.

The buttons exist only where someone is known to be at the keyboard: with basic auth on
(``DAGFLOW_DASHBOARD_AUTH``) or on a dashboard bound to localhost. Each button is a plain
HTML form that POSTs to ``/actions/<run_id>/<cancel|retry>`` with a token the page embeds
(an HMAC of the run and action under a secret made when the app starts), and the route
refuses a request whose token is missing or wrong or whose ``Origin`` (else ``Referer``)
is another site. The route calls the library (:func:`dagflow.get_run`,
:func:`dagflow.scheduling.job_hooks.rerun_job`) and redirects to the run's page, or to the
new run's page after a retry or a job's re-run.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any
from urllib.parse import quote, urlsplit

from dash import dcc, html
from flask import Flask, Response, redirect, request

from dagflow.errors import DagflowError
from dagflow.settings import Settings

#: Addresses that only this machine can reach.
LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
#: The run statuses (of the dashboard's timeline) each action applies to.
ACTION_STATUSES = {"cancel": ("running", "stale"), "retry": ("failed", "cancelled")}
#: The route's path; ``<run_id>`` and ``<action>`` are filled in.
ROUTE = "/actions/<path:run_id>/<action>"


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


Action = Callable[[Settings, str], str]


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

    @classmethod
    def for_settings(cls, settings: Settings) -> ActionGuard:
        """Actions on when auth is on or the bind address is local, and runs are in Redis."""
        trusted = bool(settings.dashboard_auth) or settings.dashboard_host in LOCAL_HOSTS
        return cls(enabled=trusted and not settings.embedded)

    def token(self, run_id: str, action: str) -> str:
        """The token a page embeds to allow ``action`` on ``run_id``."""
        return hmac.new(self.secret, f"{action}\0{run_id}".encode(), sha256).hexdigest()

    def check(self, run_id: str, action: str, token: str | None) -> bool:
        """True when ``token`` allows ``action`` on ``run_id`` (constant-time compare)."""
        return hmac.compare_digest((token or "").encode(), self.token(run_id, action).encode())


def action_href(run_id: str, action: str) -> str:
    """The route a button POSTs to."""
    return f"/actions/{quote(run_id, safe='')}/{action}"


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
        try:
            target = guard.actions[action](settings, run_id)
        except DagflowError as exc:
            return Response(f"{action} of {run_id} refused: {exc}\n", 409)
        return redirect(f"/runs/{quote(target, safe='')}", code=303)  # type: ignore[return-value]

    server.add_url_rule(ROUTE, "dagflow_run_action", act, methods=["POST"])
