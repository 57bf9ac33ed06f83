"""Telling people a run ended or is late: hooks (registered workflows) and webhooks.

What to tell is decided when the run ends (:func:`end_notices`) and written by the run
store with the ``dag_done`` commit (:mod:`dagflow.stores.notifications`); the process that
ended the run then delivers each notice (:func:`deliver_all`). A notice it could not deliver
(it died, the receiver was down) is delivered by the sweeper (:func:`sweep_notices`), in any
process, with a doubling backoff, up to ``DAGFLOW_NOTIFY_ATTEMPTS`` attempts. So each hook
and webhook is told **at least once**: twice only when a process dies after delivering and
before recording it, or a delivery outlives its claim.

A hook is a registered workflow called with the run's summary (:func:`run_summary`) as its
params. A webhook is a JSON POST of a Slack-compatible body (:func:`webhook_body`) to the URL
in the worker's environment variable ``webhook_env``; the URL never goes into the YAML,
Redis, events or logs. Neither can change the run's status: a failure is an event
(``hook_failed``, ``notification_failed``) and a line of ``dagflow status``.

Events, with ``kind`` (``on_failure``, ``on_success``, ``on_deadline_missed``, ``webhook``),
``target`` (the workflow, or the environment variable), ``trigger`` and ``attempt``:
``notification_sent`` for each delivery that worked, ``hook_failed`` (a hook) or
``notification_failed`` (a webhook) for each attempt that did not, with ``will_retry``.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagflow import workflows
from dagflow.dag.alerts import HOOK_FIELDS
from dagflow.dag.plan import RunPlan
from dagflow.stores.notifications import Notice
from dagflow.stores.transport import BACKEND_ERRORS
from dagflow.workflows.context import RunContext

if TYPE_CHECKING:
    from dagflow.execution.runtime import Runtime

logger = logging.getLogger(__name__)

#: Notices one sweep claims at most (the next sweep takes the rest).
NOTIFY_BATCH = 100
#: Cap on the wait before one more delivery attempt, in seconds.
NOTIFY_RETRY_MAX_S = 600.0
#: Failed tasks a summary lists at most (``failed_count`` says how many there are).
SUMMARY_MAX_FAILED = 20
#: What the webhook's ``text`` says for each trigger.
HEADLINES = {
    "failed": ":x: dagflow run failed",
    "success": ":white_check_mark: dagflow run succeeded",
    "deadline_missed": ":warning: dagflow run missed its deadline",
}


class WebhookError(Exception):
    """Raised (and caught here) when a webhook's POST does not get a 2xx answer."""


def trigger_of(status: str) -> str | None:
    """What a run's final status tells: ``failed`` or ``success`` (a cancel tells nobody)."""
    return status if status in ("failed", "success") else None


def end_notices(plan: RunPlan, trigger: str | None) -> tuple[str, ...]:
    """The notice ids of ``trigger`` for this run: its hooks, then its webhooks."""
    if trigger is None or plan.alerts.empty:
        return ()
    kind = HOOK_FIELDS[trigger]
    ids = [Notice.make_id(trigger, kind, name) for name in plan.alerts.hooks(trigger)]
    ids += [Notice.make_id(trigger, "webhook", env) for env in plan.alerts.webhooks(trigger)]
    return tuple(ids)


def backoff_s(attempt: int, base_s: float) -> float:
    """Seconds before the attempt after failed attempt ``attempt`` (1-based): doubling."""
    return float(min(base_s * 2 ** min(attempt - 1, 30), NOTIFY_RETRY_MAX_S))


def run_summary(rt: Runtime, run_id: str, plan: RunPlan, trigger: str) -> dict[str, Any]:
    """The run's summary: what a hook gets as params, and what a webhook's body carries.

    It is read from the run store when the notice is delivered, so a late run's summary
    shows where it stands now.
    """
    snap = rt.store.snapshot(run_id)
    tasks = rt.store.tasks(run_id) or []
    meta: Mapping[str, Any] = snap.meta if snap else {}
    failed = sorted((t for t in tasks if t.state == "failed"), key=lambda t: t.task_id)
    counts = dict(snap.counts) if snap else {}
    summary: dict[str, Any] = {
        "event": trigger,
        "run_id": run_id,
        "dag_name": plan.dag_name,
        "tenant_id": plan.tenant_id,
        "status": snap.status if snap else "unknown",
        "started_at": meta.get("started_at"),
        "finished_at": meta.get("finished_at"),
        "duration_s": meta.get("duration_s"),
        "error": meta.get("error"),
        "counts": counts,
        "failed_count": len(failed),
        "failed_tasks": [
            {
                "task_id": t.task_id,
                "attempts": t.attempts,
                "error": t.last.error
                or f"RunnerError: Task '{t.task_id}' failed after {t.attempts} attempts",
            }
            for t in failed[:SUMMARY_MAX_FAILED]
        ],
        "labels": dict(plan.labels),
        "commands": {
            "status": f"dagflow status {run_id}",
            "retry": f"dagflow retry {run_id}",
            "events": f"dagflow events tail --run {run_id}",
        },
    }
    if trigger == "deadline_missed":
        summary["deadline_s"] = meta.get("deadline_s")
        summary["commands"]["cancel"] = f"dagflow cancel {run_id}"
    return summary


def webhook_body(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible body (``text`` and an attachment of ``fields``) with the whole
    summary under ``dagflow`` for receivers that are not Slack (pure)."""
    trigger = str(summary.get("event"))
    run_id = summary.get("run_id")
    text = (
        f"{HEADLINES.get(trigger, 'dagflow')}: {summary.get('dag_name')} "
        f"(tenant {summary.get('tenant_id')}), run {run_id}"
    )
    failed = summary.get("failed_tasks") or []
    if failed:
        first = failed[0]
        more = int(summary.get("failed_count", len(failed))) - 1
        text += f"\nFailed: {first['task_id']}: {first['error']}"
        if more > 0:
            text += f" (and {more} more)"
    text += f"\nInspect: `dagflow status {run_id}`"
    fields = [
        {"title": "DAG", "value": str(summary.get("dag_name")), "short": True},
        {"title": "Tenant", "value": str(summary.get("tenant_id")), "short": True},
        {"title": "Status", "value": str(summary.get("status")), "short": True},
        {"title": "Run", "value": str(run_id), "short": True},
    ]
    if summary.get("duration_s") is not None:
        fields.append({"title": "Duration (s)", "value": str(summary["duration_s"]), "short": True})
    if summary.get("deadline_s") is not None:
        fields.append({"title": "Deadline (s)", "value": str(summary["deadline_s"]), "short": True})
    for task in failed:
        fields.append({"title": f"Task {task['task_id']}", "value": str(task["error"])})
    colour = {"failed": "danger", "success": "good", "deadline_missed": "warning"}.get(trigger)
    return {
        "text": text,
        "attachments": [{"color": colour or "#439FE0", "fallback": text, "fields": fields}],
        "dagflow": dict(summary),
    }


def post_json(url: str, body: Mapping[str, Any], timeout_s: float) -> None:
    """POST ``body`` as JSON to ``url``; returns on a 2xx answer.

    The standard library's client is enough for one POST with a timeout, and adds no
    dependency. Errors never quote the URL (it is a secret).

    Raises:
        WebhookError: Not an http(s) URL, a non-2xx answer, or no answer in time.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise WebhookError("the variable does not hold an http:// or https:// URL")
    data = json.dumps(body, default=str).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "dagflow-notify"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read(65536)
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise WebhookError(f"no answer: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise WebhookError(f"no answer: {type(exc).__name__}: {exc}") from None


def _call(rt: Runtime, notice: Notice, plan: RunPlan, summary: dict[str, Any]) -> None:
    if notice.kind == "webhook":
        url = os.environ.get(notice.target)
        if not url:
            raise WebhookError(f"environment variable {notice.target} is not set on this worker")
        post_json(url, webhook_body(summary), rt.settings.notify_timeout_s)
        return
    func = workflows.get(notice.target)
    if workflows.takes_context(notice.target):
        ctx = RunContext.build(
            notice.run_id,
            notice.kind,
            notice.attempt,
            0,
            dag_name=plan.dag_name,
            tenant_id=plan.tenant_id,
            params=plan.params,
            labels=plan.labels,
        )
        func(summary, ctx)  # type: ignore[call-arg]
    else:
        func(summary)


def deliver(rt: Runtime, notice: Notice, plan: RunPlan | None = None) -> bool:
    """Call the notice's hook or POST its webhook once; record how it went. Never raises
    for the hook's or the receiver's failure (a store error does: the sweeper tries again).

    Returns:
        True if it was delivered.
    """
    plan = plan or rt.plan(notice.run_id)
    if plan is None:
        rt.store.settle_notice(notice, False, "the run's plan is gone from the run store")
        return False
    fields = {"kind": notice.kind, "target": notice.target, "trigger": notice.trigger}
    summary = run_summary(rt, notice.run_id, plan, notice.trigger)  # a store error: raised
    try:
        _call(rt, notice, plan, summary)
    except Exception as exc:  # the hook's or the receiver's: told, never raised
        error = f"{type(exc).__name__}: {exc}"
        last = notice.attempt >= rt.settings.notify_attempts
        name = "notification_failed" if notice.kind == "webhook" else "hook_failed"
        logger.warning(
            "dagflow: %s %s of run %s failed (attempt %d%s): %s",
            notice.kind, notice.target, notice.run_id, notice.attempt,
            ", the last" if last else "", error,
        )  # fmt: skip
        if last:
            rt.store.settle_notice(notice, False, error)
        else:  # (False if another process settled it meanwhile: nothing to re-arm)
            rt.store.retry_notice(
                notice, backoff_s(notice.attempt, rt.settings.notify_retry_s), error
            )
        rt.emit(name, notice.run_id, plan, **fields, attempt=notice.attempt, error=error,
                will_retry=not last)  # fmt: skip
        return False
    rt.store.settle_notice(notice, True)
    rt.emit("notification_sent", notice.run_id, plan, **fields, attempt=notice.attempt)
    return True


def deliver_all(rt: Runtime, notices: Sequence[Notice], plan: RunPlan | None = None) -> int:
    """Deliver each notice (see :func:`deliver`); returns how many were delivered.

    A store error stops here and is logged: the notices left are the sweeper's.
    """
    sent = 0
    for notice in notices:
        try:
            sent += deliver(rt, notice, plan)
        except BACKEND_ERRORS as exc:
            logger.warning(
                "dagflow: notices of run %s are left to the sweeper: %s", notice.run_id, exc
            )
            break
    return sent


def sweep_notices(app: Any, rt: Runtime) -> int:
    """A sweep hook: deliver the notices that are due (their writer died, or a retry).

    Each is claimed for ``DAGFLOW_NOTIFY_TIMEOUT_S + DAGFLOW_LEASE_S``, so two sweepers
    do not deliver it at once. Returns how many were delivered.
    """
    lease = rt.settings.notify_timeout_s + rt.settings.lease_s
    claimed = rt.store.claim_notices(NOTIFY_BATCH, lease)
    for notice in claimed:
        logger.info(
            "dagflow: delivering %s %s of run %s (attempt %d)",
            notice.kind, notice.target, notice.run_id, notice.attempt,
        )  # fmt: skip
    return deliver_all(rt, claimed)
