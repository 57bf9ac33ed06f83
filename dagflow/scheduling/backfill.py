"""Backfill: run a schedule for its cron times in a past window, each minute once.

``dagflow backfill nightly --from 2026-01-01 --to 2026-01-04`` makes one job per cron time
``m`` of the schedule with ``from <= m < to`` (UTC; a date is its midnight), oldest first,
and starts its run with ``scheduled_minute = m`` in the run context, as Beat would have.

* **Once per minute.** Each minute is claimed in :mod:`dagflow.stores.minute_claims`, the
  claims every scheduler races for, before its job is made: a minute Beat (or
  ``dagflow schedule``) claimed, or an earlier or concurrent backfill, is skipped and listed
  as such. A backfill's claims are kept ``DAGFLOW_RUN_TTL_S`` (a scheduler's, 2 hours).
* **Bounded.** The runs are submitted in order and wait as ``pending`` for their slots
  (:mod:`dagflow.execution.admission`): ``SCHED_MAX_PARALLEL``, the DAG's
  ``max_active_runs``, the tenant's limit, and ``--max-active`` (a ``backfill:<id>`` scope).
  Waiting runs start oldest first.
* **Cancellable.** :func:`cancel_backfill` flags the backfill (the process still submitting
  stops before its next minute) and cancels every run it started: those still waiting end
  ``cancelled`` without starting, running ones are interrupted; their jobs end ``FAILED``.
* **Visible.** Each job is a job of the schedule (``dagflow jobs --schedule ID``), each run
  is labelled ``backfill_id``, and the backfill itself is kept in Redis (``--json`` prints it).

The window maths is pure (:func:`backfill_minutes`, time as a parameter); the rest needs
Redis and a broker, like Beat.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dagflow.client.runner import Runner
from dagflow.clock import utc_now
from dagflow.dag.load import Dag
from dagflow.dag.params import resolve_params
from dagflow.errors import ConfigError, RunnerError, ScheduleError
from dagflow.events.state_store import StateRecorder
from dagflow.execution.admission import BACKFILL_LABEL, BACKFILL_LIMIT_LABEL
from dagflow.execution.cancel import cancel_run
from dagflow.execution.lifecycle import start_run
from dagflow.scheduling.backfill_window import (
    BackfillCancel,
    BackfillMinute,
    BackfillResult,
    MinuteState,
    backfill_minutes,
)
from dagflow.scheduling.firing import Firing, firing_dag
from dagflow.scheduling.schedule_dir import ScheduleDir
from dagflow.scheduling.schedules import Schedule, minute_key
from dagflow.settings import Settings
from dagflow.stores.backfills import BackfillStore, RedisBackfillStore
from dagflow.stores.minute_claims import CLAIM_TTL_S, RedisMinuteClaims
from dagflow.wiring import state_recorder

logger = logging.getLogger(__name__)

#: Minutes started between two saves of the backfill's document.
SAVE_EVERY = 50


def find_schedule(settings: Settings, schedule_id: str) -> Schedule:
    """The schedule ``schedule_id`` of ``DAGFLOW_SCHEDULES_DIR``.

    Raises:
        ScheduleError: No such schedule (a bad file is reported as the problem, if any).
    """
    directory = ScheduleDir(settings.schedules_dir)
    directory.refresh()
    for schedule in directory.schedules:
        if schedule.id == schedule_id:
            return schedule
    errors = directory.errors
    if errors:
        raise ScheduleError.collect(errors)
    known = ", ".join(sorted(s.id for s in directory.schedules)) or "none"
    raise ScheduleError(
        f"unknown schedule (known: {known})", file=str(settings.schedules_dir), task=schedule_id
    )


def _redis(settings: Settings) -> str:
    url = settings.redis_url
    if url is None or settings.embedded:
        raise ConfigError(
            "backfills need Redis: set DAGFLOW_BROKER_URL to a redis:// (or sentinel://) URL "
            "(minutes are claimed there, as by Beat, and the runs go to its workers)"
        )
    return url


def start_backfill(
    schedule_id: str,
    start: datetime,
    end: datetime,
    *,
    dry_run: bool = False,
    max_active: int | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> BackfillResult:
    """Make a job and start a run for every cron time of ``schedule_id`` in ``[start, end)``.

    Args:
        schedule_id: A schedule of ``DAGFLOW_SCHEDULES_DIR`` (disabled ones too).
        start: The window's first instant, included (aware).
        end: The window's end, excluded (aware; not after now).
        dry_run: Claim and start nothing: list each minute as ``planned`` or ``skipped``.
        max_active: Runs of this backfill that may run at once (None: the usual limits).
        settings: Settings (from the environment if None).
        now: The current time (default: the clock).

    Returns:
        The backfill, each minute ``started`` or ``skipped`` (or ``cancelled`` if it was
        cancelled meanwhile), oldest first.

    Raises:
        ScheduleError: Unknown schedule, bad window, or ``max_active`` below 1.
        SpecError: The schedule's DAG cannot be loaded, or its params do not fit.
        ConfigError: No Redis or broker.
        UnreachableError: Redis or the broker cannot be reached.
    """
    settings = settings or Settings.from_env()
    url = _redis(settings)
    if max_active is not None and max_active < 1:
        raise ScheduleError("--max-active must be 1 or more", task=schedule_id, field="max-active")
    schedule = find_schedule(settings, schedule_id)
    minutes = backfill_minutes(schedule, start, end, now or utc_now())
    claims = RedisMinuteClaims.from_url(
        url, master_name=settings.redis_master_name, ttl_s=max(CLAIM_TTL_S, settings.run_ttl_s)
    )
    base = BackfillResult(
        backfill_id=None, schedule_id=schedule.id, start=minute_key(start), end=minute_key(end),
        max_active=max_active,
    )  # fmt: skip
    if dry_run:
        planned = []
        for minute in minutes:
            owner = claims.owner(schedule.id, minute_key(minute))
            state: MinuteState = "planned" if owner is None else "skipped"
            planned.append(BackfillMinute(minute=minute_key(minute), state=state, run_id=owner))
        claims.client.close()
        return base.model_copy(update={"dry_run": True, "minutes": tuple(planned)})
    probe = Firing(schedule_id=schedule.id, dag=schedule.dag, tenant=schedule.tenant,
                   scheduled_minute="", run_id="")  # fmt: skip
    dag = firing_dag(probe, settings)  # a bad DAG or params fail before anything is claimed
    resolve_params(dag.spec.params, schedule.params, dag.source)
    backfills = RedisBackfillStore.from_url(url, master_name=settings.redis_master_name)
    runner = Runner(settings)
    recorder = state_recorder(settings)
    backfill_id = uuid.uuid4().hex
    result = base.model_copy(update={"backfill_id": backfill_id})
    done: list[BackfillMinute] = []
    try:
        backfills.save(backfill_id, result.model_dump_json(), settings.run_ttl_s)
        for index, minute in enumerate(minutes):
            if backfills.cancelled(backfill_id):
                rest = minutes[index:]
                done += [BackfillMinute(minute=minute_key(m), state="cancelled") for m in rest]
                break
            done.append(_start_minute(runner, recorder, schedule, dag, minute, backfill_id,
                                      max_active, claims))  # fmt: skip
            if len(done) % SAVE_EVERY == 0:
                _save(backfills, result, done, settings)
        result = _save(backfills, result, done, settings)
        if backfills.cancelled(backfill_id):
            # A cancel that read the document before the last runs were saved: end them too.
            cancel_runs(runner, result.run_ids)
            result = _save(backfills, result.model_copy(update={"cancelled": True}), done,
                           settings)  # fmt: skip
    finally:
        runner.close(wait=False)
        backfills.close()
        claims.client.close()
    logger.info(
        "dagflow: backfill %s of %s: %d started, %d skipped", backfill_id, schedule.id,
        result.count("started"), result.count("skipped"),
    )  # fmt: skip
    return result


def _save(
    store: BackfillStore, result: BackfillResult, done: Sequence[BackfillMinute], s: Settings
) -> BackfillResult:
    result = result.model_copy(update={"minutes": tuple(done)})
    store.save(str(result.backfill_id), result.model_dump_json(), s.run_ttl_s)
    return result


def _start_minute(
    runner: Runner,
    state: StateRecorder,
    schedule: Schedule,
    dag: Dag,
    minute: datetime,
    backfill_id: str,
    max_active: int | None,
    claims: RedisMinuteClaims,
) -> BackfillMinute:
    """Claim one minute; if won, make its job and start its run."""
    key = minute_key(minute)
    run_id, job_id = uuid.uuid4().hex, uuid.uuid4().hex
    if not claims.claim_many([(schedule.id, key, run_id)])[0]:
        return BackfillMinute(minute=key, state="skipped", run_id=claims.owner(schedule.id, key))
    firing = Firing(
        schedule_id=schedule.id, dag=schedule.dag, tenant=schedule.tenant, scheduled_minute=key,
        run_id=run_id, catch_up=True, params=schedule.params, job_id=job_id,
        max_retries=schedule.max_retries,
    )  # fmt: skip
    rt = runner.runtime
    rt.jobs.add([firing.job(time.time())], queue=False)  # this process starts it, not a drain
    state.record_event(firing.state_event("schedule_enqueued", backfill_id=backfill_id))
    state.record_event(firing.state_event("run_started", dag_name=dag.name))
    labels: dict[str, Any] = {**firing.labels, BACKFILL_LABEL: backfill_id}
    if max_active is not None:
        labels[BACKFILL_LIMIT_LABEL] = max_active
    start_run(runner.app, rt, dag, run_id=run_id, labels=labels, params=schedule.params)
    return BackfillMinute(minute=key, state="started", run_id=run_id, job_id=job_id)


def load_backfill(backfill_id: str, settings: Settings | None = None) -> BackfillResult:
    """The backfill ``backfill_id`` as its runner last saved it (progress: its jobs).

    Raises:
        RunnerError: Unknown or expired.
    """
    settings = settings or Settings.from_env()
    store = RedisBackfillStore.from_url(_redis(settings), master_name=settings.redis_master_name)
    try:
        document = store.load(backfill_id)
        cancelled = store.cancelled(backfill_id)
    finally:
        store.close()
    if document is None:
        raise RunnerError(f"backfill {backfill_id} is not in Redis (unknown or expired)")
    result = BackfillResult.model_validate_json(document)
    return result.model_copy(update={"cancelled": cancelled}) if cancelled else result


def cancel_runs(runner: Runner, run_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Cancel each run; return (cancelled, already ended)."""
    cancelled: list[str] = []
    ended: list[str] = []
    for run_id in run_ids:
        try:
            outcome = cancel_run(runner.app, runner.runtime, run_id)
        except RunnerError:
            ended.append(run_id)  # expired
            continue
        (ended if outcome.already_ended else cancelled).append(run_id)
    return cancelled, ended


def cancel_backfill(backfill_id: str, *, settings: Settings | None = None) -> BackfillCancel:
    """Cancel a backfill as a whole: it starts no more minutes, and every run it started
    that has not ended is cancelled (waiting ones never start; running ones are interrupted).

    Cancelling twice is harmless: the second finds the runs ended.

    Raises:
        RunnerError: Unknown or expired backfill.
        ConfigError: No Redis or broker.
    """
    settings = settings or Settings.from_env()
    url = _redis(settings)
    store = RedisBackfillStore.from_url(url, master_name=settings.redis_master_name)
    try:
        if store.load(backfill_id) is None:
            raise RunnerError(f"backfill {backfill_id} is not in Redis (unknown or expired)")
        store.cancel(backfill_id, settings.run_ttl_s)
    finally:
        store.close()
    result = load_backfill(backfill_id, settings)
    runner = Runner(settings)
    try:
        cancelled, ended = cancel_runs(runner, result.run_ids)
    finally:
        runner.close(wait=False)
    return BackfillCancel(
        backfill_id=backfill_id, cancelled_runs=tuple(cancelled), ended_runs=tuple(ended)
    )
