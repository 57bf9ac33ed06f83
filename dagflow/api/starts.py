"""The API's routes that start runs from outside a DAG's name: events and backfills.

* ``POST /api/v1/events/{name}`` ``{"id": EVENT_ID, "data": {...}}``: one run of each DAG of
  the token's tenant whose ``triggers`` list the event, once per event id
  (:func:`dagflow.client.triggers.trigger_event`); a repeat answers with the first call's
  runs (``repeat: true``) and starts nothing.
* ``POST /api/v1/backfills`` ``{"schedule": ID, "from": T, "to": T, "dry_run": bool,
  "max_active": N}``: one job per cron time of the window
  (:func:`dagflow.scheduling.backfill.start_backfill`). The runs are submitted (waiting for
  their slots as ``pending``), not waited for, so the request ends when every minute is
  claimed and submitted. A tenant token may backfill only its tenant's schedules; another
  tenant's is a 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from dagflow.api.auth import Caller, Context
from dagflow.client.triggers import trigger_event
from dagflow.errors import ApiError, ScheduleError
from dagflow.scheduling.backfill import find_schedule, start_backfill
from dagflow.scheduling.backfill_window import parse_instant

router = APIRouter()


class EventBody(BaseModel):
    """``POST /events/{name}``'s body."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=256)]
    data: dict[str, Any] = Field(default_factory=dict)


class BackfillBody(BaseModel):
    """``POST /backfills``'s body (``from`` and ``to``: a date or a UTC time)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schedule: Annotated[str, Field(min_length=1)]
    start: Annotated[str, Field(alias="from", min_length=1)]
    end: Annotated[str, Field(alias="to", min_length=1)]
    dry_run: bool = False
    max_active: Annotated[int | None, Field(ge=1)] = None


@router.post("/events/{name}", tags=["events"], summary="Start the runs an event triggers")
def post_event(name: str, body: EventBody, ctx: Context, who: Caller) -> dict[str, Any]:
    """Start one run of each DAG of the token's tenant (every tenant for an admin token)
    whose ``triggers`` list ``name``, with ``data`` as run params; once per ``id``."""
    result = trigger_event(
        name,
        body.id,
        body.data,
        tenant=None if who.admin else who.tenant,
        settings=ctx.settings,
        runner=ctx.runner,
        catalog=ctx.catalog,
    )
    return result.to_dict()


@router.post("/backfills", status_code=201, tags=["schedules"], summary="Backfill a schedule")
def post_backfill(body: BackfillBody, ctx: Context, who: Caller) -> dict[str, Any]:
    """One job per cron time of the schedule in ``[from, to)``, in order, each once."""
    try:
        schedule = find_schedule(ctx.settings, body.schedule)
    except ScheduleError:
        schedule = None
    if schedule is None or not who.may_see(schedule.tenant):
        raise ApiError(
            f"no schedule {body.schedule!r}", status=404, code="unknown_schedule", field="schedule"
        )
    result = start_backfill(
        body.schedule,
        parse_instant(body.start, "from"),
        parse_instant(body.end, "to"),
        dry_run=body.dry_run,
        max_active=body.max_active,
        settings=ctx.settings,
    )
    return result.model_dump(mode="json")
