"""``/api/v1/runs``: start a DAG by name, list runs, and one run's status, outputs, events,
cancel and retry.

Starting a run goes through the checks ``dagflow run`` makes (the DAG file's, then the run
params' against its ``params:`` block) and :meth:`Runner.submit`; reads and actions go
through :class:`~dagflow.client.handle.RunHandle`, as ``dagflow status``, ``outputs``,
``cancel`` and ``retry`` do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from dagflow.api.auth import Caller, Context, tenant_filter
from dagflow.api.context import ApiContext
from dagflow.api.sse import event_stream, wants_event_stream
from dagflow.client.status import RunStatus
from dagflow.dag.load import Dag
from dagflow.dag.params import resolve_params
from dagflow.errors import ApiError, RunnerError
from dagflow.stores.base import run_position
from dagflow.stores.tokens import ApiToken

router = APIRouter(prefix="/runs", tags=["runs"])

#: Seconds a request whose idempotency key another request holds waits for that run to
#: appear before it answers 409 (the other request may still be storing it).
IDEMPOTENCY_WAIT_S = 10.0
#: Most runs one page of ``GET /runs`` holds.
LIST_MAX = 200
#: Run statuses ``GET /runs?status=`` accepts (those of ``dagflow runs --status``).
RunStatusName = Literal["pending", "running", "success", "failed", "cancelled"]
#: Letters of an idempotency key: printable ASCII without spaces.
KEY_PATTERN = r"^[!-~]{1,200}$"


class StartRun(BaseModel):
    """The body of ``POST /runs``."""

    model_config = ConfigDict(extra="forbid")

    dag: str = Field(min_length=1, max_length=500, description="the DAG's name")
    params: dict[str, Any] = Field(
        default_factory=dict, description="run-level params over the DAG's params: defaults"
    )
    idempotency_key: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="the same key (per tenant) starts one run; sent again, the same run, 200",
    )


def encode_cursor(position: tuple[int, str]) -> str:
    """The opaque ``cursor`` of a listing position."""
    return base64.urlsafe_b64encode(f"{position[0]}:{position[1]}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The position of a ``cursor``.

    Raises:
        ApiError: 422 naming ``cursor`` when it is not one this API gave.
    """
    try:
        started, sep, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if not sep or not run_id:
            raise ValueError(cursor)
        return int(started), run_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            "not a cursor this API gave", status=422, code="invalid_request", field="cursor"
        ) from None


def _find_dag(ctx: ApiContext, name: str, who: ApiToken) -> Dag:
    entry = ctx.catalog.find(name)
    if entry is None or not who.may_see(entry.tenant_id):
        # Another tenant's DAG is answered as one that does not exist (404, never 403).
        raise ApiError(
            f"no DAG named {name!r} in the DAGs folder", status=404, code="unknown_dag", field="dag"
        )
    if entry.dag is None:
        assert entry.error is not None
        raise ApiError(
            f"DAG {name!r} is invalid: {entry.error.one_line()}",
            status=422,
            code="invalid_dag",
            field="dag",
        )
    return entry.dag


def _fingerprint(name: str, params: dict[str, Any]) -> str:
    text = json.dumps({"dag": name, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@router.post(
    "",
    status_code=201,
    summary="Start a run of a DAG by name",
    responses={200: {"description": "the run this idempotency key started before"}},
)
def start_run(body: StartRun, ctx: Context, who: Caller, response: Response) -> dict[str, Any]:
    """Start a run of the DAG called ``dag`` with ``params``; 201 and its ``run_id``.

    With ``idempotency_key``, the first request starts the run and every later one with the
    same key (of the same tenant, within ``DAGFLOW_API_IDEMPOTENCY_TTL_S``) answers 200 with
    the same ``run_id``; the same key with another DAG or params is a 409.
    """
    dag = _find_dag(ctx, body.dag, who)
    resolve_params(dag.spec.params, body.params, dag.source)  # 422 naming params.<key>
    run_id = uuid.uuid4().hex
    labels: dict[str, Any] = {"api_token": who.id}
    tenant = dag.spec.tenant_id
    key = body.idempotency_key
    fingerprint = _fingerprint(dag.name, body.params)
    if key is not None:
        labels["idempotency_key"] = key
        existing = _claim_key(ctx, tenant, key, run_id, fingerprint)
        if existing is not None:
            response.status_code = 200
            response.headers["Location"] = f"/api/v1/runs/{existing}"
            return {"run_id": existing}
    try:
        ctx.runner.submit(dag, run_id=run_id, labels=labels, params=body.params)
    except BaseException:
        if key is not None:
            ctx.keys.release(tenant, key, run_id, fingerprint)
        raise
    response.headers["Location"] = f"/api/v1/runs/{run_id}"
    return {"run_id": run_id}


def _claim_key(ctx: ApiContext, tenant: str, key: str, run_id: str, fingerprint: str) -> str | None:
    """Claim ``key`` for ``run_id`` (None: start it) or return the run it stands for."""
    ttl = min(ctx.settings.idempotency_ttl_s, ctx.settings.run_ttl_s)
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
    while True:
        claim = ctx.keys.claim(tenant, key, run_id, fingerprint, ttl)
        if claim.won:
            return None
        if claim.fingerprint != fingerprint:
            raise ApiError(
                "this idempotency key was used for another DAG or other params",
                status=409,
                code="idempotency_key_reused",
                field="idempotency_key",
            )
        if ctx.store.snapshot(claim.run_id) is not None:
            return claim.run_id
        if time.monotonic() >= deadline:
            raise ApiError(
                "another request with this idempotency key is still starting its run; "
                "send it again",
                status=409,
                code="idempotency_key_in_progress",
                field="idempotency_key",
            )
        time.sleep(0.02)


@router.get("", summary="Recent runs, newest first")
def list_runs(
    ctx: Context,
    who: Caller,
    tenant: str | None = None,
    dag: str | None = None,
    status: RunStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Runs still in the run store, newest first, as ``dagflow runs --json`` lists them (read
    as :func:`dagflow.list_runs` reads them, on this process's open run store).

    ``next_cursor`` (null on the last page) is passed as ``cursor`` for the next page.
    """
    before = decode_cursor(cursor) if cursor else None
    found = ctx.store.list_runs(
        tenant_id=tenant_filter(who, tenant),
        dag_name=dag,
        status=status,
        limit=limit,
        before=before,
    )
    runs = [RunStatus.from_store(snap).to_dict() for snap in found]
    more = encode_cursor(run_position(found[-1])) if len(found) == limit else None
    return {"runs": runs, "next_cursor": more}


@router.get("/{run_id}", summary="A run's status and its tasks")
def get_run(run_id: str, ctx: Context, who: Caller) -> dict[str, Any]:
    """What ``dagflow status RUN_ID --json`` shows."""
    handle, _ = ctx.visible_run(run_id, who)
    return handle.status().to_dict(tracebacks=True)


@router.get("/{run_id}/outputs", summary="A run's stored outputs")
def get_outputs(run_id: str, ctx: Context, who: Caller) -> dict[str, Any]:
    """Each finished task's output, as ``dagflow outputs RUN_ID`` prints them."""
    handle, _ = ctx.visible_run(run_id, who)
    return handle.outputs()


@router.post("/{run_id}/cancel", summary="Cancel a run")
def cancel_run(run_id: str, ctx: Context, who: Caller) -> dict[str, Any]:
    """As ``dagflow cancel``: pending steps never start, running ones are interrupted; a run
    that already ended is left as it is (``already_ended``)."""
    handle, _ = ctx.visible_run(run_id, who)
    outcome = handle.cancel()
    return {
        "run_id": run_id,
        "already_ended": outcome.already_ended,
        "status": outcome.status,
        "cancelled": list(outcome.cancelled),
        "interrupted": list(outcome.interrupted),
    }


@router.post("/{run_id}/retry", status_code=201, summary="Retry an ended run")
def retry_run(run_id: str, ctx: Context, who: Caller, response: Response) -> dict[str, Any]:
    """As ``dagflow retry --no-wait``: a new run reusing what succeeded; 409 for a run still
    running or one that succeeded."""
    handle, _ = ctx.visible_run(run_id, who)
    try:
        new = handle.retry()
    except RunnerError as exc:
        raise ApiError(str(exc), status=409, code="not_retryable") from exc
    response.headers["Location"] = f"/api/v1/runs/{new.run_id}"
    return {"run_id": new.run_id, "retry_of": run_id}


@router.get(
    "/{run_id}/events",
    summary="A run's events (JSON list, or live server-sent events)",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def get_events(
    run_id: str, request: Request, ctx: Context, who: Caller
) -> JSONResponse | StreamingResponse:
    """The run's events, oldest first; with ``Accept: text/event-stream``, server-sent events
    (``id``: the event's stream id, ``event``: its name, ``data``: the JSON line) that go on
    live until the run ends, then one ``end`` event."""
    _, snap = ctx.visible_run(run_id, who)
    started = snap.meta.get("started_at")
    started_at = float(started) if isinstance(started, int | float) else None
    if wants_event_stream(request):
        return StreamingResponse(
            event_stream(ctx, request, run_id, started_at),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    records, _ = ctx.feed.history(run_id, started_at)
    return JSONResponse(records)
