"""The API's other routes: DAGs, scheduled jobs, schedules, and health.

Each listing is filtered to the token's tenant (an admin token sees every tenant and the
files that cannot be loaded, with their errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from dagflow.api.auth import Caller, Context, tenant_filter
from dagflow.errors import ScheduleError
from dagflow.scheduling.job import parse_status
from dagflow.scheduling.schedules import SCHEDULE_SUFFIXES, Schedule, load_schedule_file

router = APIRouter()

JobStatusName = Literal["pending", "running", "success", "failed", "retry"]


@router.get("/dags", tags=["dags"], summary="The DAGs that can be started, by name")
def list_dags(ctx: Context, who: Caller) -> dict[str, Any]:
    """The DAGs of ``DAGFLOW_DAGS_DIR`` the token may start: name, tenant, tasks, params.

    ``errors`` (admin tokens only) lists the files that fail validation.
    """
    dags = []
    errors = []
    for entry in ctx.catalog.entries():
        if entry.dag is None:
            if who.admin and entry.error is not None:
                errors.extend(entry.error.lines())
            continue
        spec = entry.dag.spec
        if who.may_see(spec.tenant_id):
            dags.append(
                {
                    "name": spec.name,
                    "tenant_id": spec.tenant_id,
                    "tasks": spec.task_ids,
                    "params": dict(spec.params),
                    "file": str(entry.path),
                }
            )
    body: dict[str, Any] = {"dags": dags}
    if who.admin:
        body["errors"] = errors
    return body


@router.get("/jobs", tags=["jobs"], summary="Scheduled jobs, newest first")
def list_jobs(
    ctx: Context,
    who: Caller,
    schedule: str | None = None,
    tenant: str | None = None,
    status: JobStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """Jobs as ``dagflow jobs --json`` lists them."""
    found = ctx.jobs.jobs(
        schedule=schedule,
        tenant=tenant_filter(who, tenant),
        status=parse_status(status) if status else None,
        limit=limit,
    )
    return {"jobs": [job.to_dict() for job in found]}


def _schedule(schedule: Schedule) -> dict[str, Any]:
    return schedule.model_dump(mode="json")


@router.get("/schedules", tags=["schedules"], summary="The schedules of DAGFLOW_SCHEDULES_DIR")
def list_schedules(ctx: Context, who: Caller) -> dict[str, Any]:
    """Every schedule entry of the token's tenant (``tenant``), from the schedule files.

    ``errors`` (admin tokens only) lists the problems of the files that fail validation.
    """
    directory = Path(ctx.settings.schedules_dir)
    schedules: list[dict[str, Any]] = []
    errors: list[str] = []
    paths = sorted(directory.iterdir()) if directory.is_dir() else []
    for path in paths:
        if path.suffix not in SCHEDULE_SUFFIXES or not path.is_file():
            continue
        try:
            loaded = load_schedule_file(path)
        except ScheduleError as exc:
            errors.extend(exc.lines())
            continue
        schedules += [{**_schedule(s), "file": str(path)} for s in loaded if who.may_see(s.tenant)]
    body: dict[str, Any] = {"schedules": schedules}
    if who.admin:
        body["errors"] = errors
    return body


@router.get("/health", tags=["health"], summary="Is the API up, and does it reach Redis")
def health(ctx: Context) -> JSONResponse:
    """200 ``{"status": "ok"}`` when the run store answers, else 503 (no token needed)."""
    try:
        ctx.store.snapshot("health-check")
    except Exception:  # any failure of the store is "not healthy", never a 500
        return JSONResponse({"status": "unavailable", "redis": "unreachable"}, 503)
    return JSONResponse({"status": "ok", "redis": "ok"})
