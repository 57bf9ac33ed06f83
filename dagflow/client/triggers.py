"""Event-triggered runs: ``dagflow trigger NAME --id EVENT_ID --data JSON``.

A DAG lists the events that start it (``triggers: [{event: orders.loaded}]``). Triggering an
event starts one run of every DAG of the DAG folder (``DAGFLOW_DAGS_DIR``) that lists it,
of one tenant or of all, with the event's ``data`` as the run's params (checked against each
DAG's ``params:`` block before anything starts).

Once per event id. Each (event, event id, DAG) is claimed in Redis for the run id the call
would start (:mod:`dagflow.stores.event_claims`), atomically, for ``DAGFLOW_RUN_TTL_S`` (as
long as the run itself is kept): a producer that sends the same event id again, even
concurrently, starts nothing and gets back the runs the first call started. A call whose
run could not start (Redis went away mid-way) gives its claim back, so a retry starts it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagflow.client.runner import Runner
from dagflow.dag.catalog import DagCatalog, dags_in
from dagflow.dag.params import resolve_params
from dagflow.dag.spec import EVENT_PATTERN, EVENT_RULE
from dagflow.errors import ConfigError, EventError
from dagflow.settings import Settings
from dagflow.stores.event_claims import EventClaims, RedisEventClaims

logger = logging.getLogger(__name__)

#: Longest event id accepted, in characters.
EVENT_ID_MAX = 256
#: The run labels that record which event started a run.
EVENT_LABEL = "event"
EVENT_ID_LABEL = "event_id"


@dataclass(frozen=True)
class TriggeredRun:
    """One run an event started.

    Attributes:
        dag: The DAG's ``name``.
        tenant_id: The DAG's ``tenant_id``.
        source: The DAG file.
        run_id: The run's id.
        started: True if this call started it; False if an earlier call with the same event
            id did (this call started nothing).
    """

    dag: str
    tenant_id: str
    source: str
    run_id: str
    started: bool

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON values (the API's response item)."""
        return {
            "dag": self.dag,
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "started": self.started,
        }


@dataclass(frozen=True)
class TriggerResult:
    """What one trigger call did.

    Attributes:
        event: The event's name.
        event_id: The event's id.
        runs: One entry per DAG the event starts, in DAG file order: the run this call
            started, or the one an earlier call with this id started.
        unreadable: One line per DAG file of the folder that could not be loaded (it may
            have listed the event: the caller should say so).
    """

    event: str
    event_id: str
    runs: tuple[TriggeredRun, ...]
    unreadable: tuple[str, ...] = field(default=())

    @property
    def repeat(self) -> bool:
        """True when every run was started by an earlier call (a retried event id)."""
        return bool(self.runs) and not any(run.started for run in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values."""
        return {
            "event": self.event,
            "id": self.event_id,
            "runs": [run.to_dict() for run in self.runs],
        }


def check_event(name: str, event_id: str, data: Any) -> dict[str, Any]:
    """Check an event's name, id and data (pure); return the data as a dict.

    Raises:
        EventError: A name that is not an event name, an empty or too long id, or data that
            is not a mapping (each names the field).
    """
    if not isinstance(name, str) or not EVENT_PATTERN.fullmatch(name):
        raise EventError(f"expected an event name ({EVENT_RULE}), got {name!r}", field="name")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > EVENT_ID_MAX:
        raise EventError(
            f"expected a non-empty event id of at most {EVENT_ID_MAX} characters",
            task=name,
            field="id",
        )
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise EventError(
            f"expected a JSON object of run params, got {type(data).__name__}",
            task=name,
            field="data",
        )
    return dict(data)


def trigger_event(
    name: str,
    event_id: str,
    data: Mapping[str, Any] | None = None,
    *,
    tenant: str | None = None,
    settings: Settings | None = None,
    runner: Runner | None = None,
    catalog: DagCatalog | None = None,
    claims: EventClaims | None = None,
) -> TriggerResult:
    """Start one run of each DAG whose ``triggers`` list the event ``name``, once per
    ``event_id``.

    Args:
        name: The event's name (``orders.loaded``).
        event_id: The producer's id of this occurrence of the event: the same id again
            starts nothing (for ``DAGFLOW_RUN_TTL_S``) and returns the first call's runs.
        data: The runs' params (checked against each DAG's ``params:``).
        tenant: Only DAGs of this ``tenant_id`` (None: every tenant; admins and the CLI).
        settings: Settings (from the environment if None).
        runner: A runner to submit with (a long-lived caller such as the API passes one).
        catalog: The DAGs to look in (default: :func:`~dagflow.dag.catalog.dags_in` of
            ``DAGFLOW_DAGS_DIR``, read now).
        claims: Where event ids are claimed (default: the run store's Redis).

    Returns:
        The runs, one per matching DAG (none: no DAG of the tenant lists the event).

    Raises:
        EventError: A bad name, id or data.
        DagValidationError: ``data`` does not fit a matching DAG's ``params:`` (one line per
            unknown param, naming the file and ``params.KEY``); nothing was started.
        ConfigError: No Redis is configured (event ids are claimed in Redis and the runs go
            to the workers).
        UnreachableError: Redis or the broker cannot be reached.
    """
    params = check_event(name, event_id, data)
    settings = settings or (runner.settings if runner is not None else Settings.from_env())
    if settings.redis_url is None or settings.embedded:
        raise ConfigError(
            "event triggers need Redis: set DAGFLOW_BROKER_URL to a redis:// (or sentinel://) "
            "URL (event ids are claimed there, and the runs go to its workers)"
        )
    catalog = catalog if catalog is not None else dags_in(settings.dags_dir, settings)
    dags = catalog.triggered_by(name, tenant)
    for dag in dags:  # every DAG's params first: a bad payload starts nothing
        resolve_params(dag.spec.params, params, dag.source)
    unreadable = tuple(line for error in catalog.errors for line in error.lines())
    if not dags:
        return TriggerResult(name, event_id, (), unreadable)
    own_claims = claims is None
    claims = claims or RedisEventClaims.from_url(
        settings.redis_url, master_name=settings.redis_master_name
    )
    own_runner = runner is None
    runner = runner or Runner(settings)
    labels = {EVENT_LABEL: name, EVENT_ID_LABEL: event_id}
    runs: list[TriggeredRun] = []
    try:
        for dag in dags:
            token = uuid.uuid4().hex
            holder = claims.claim(name, event_id, dag.name, token, settings.run_ttl_s)
            if holder == token:
                try:
                    runner.submit(dag, run_id=token, labels=labels, params=params)
                except BaseException:
                    claims.release(name, event_id, dag.name, token)
                    raise
                logger.info("dagflow: event %s %s started run %s of %s", name, event_id, token,
                            dag.name)  # fmt: skip
            info = TriggeredRun(dag.name, dag.spec.tenant_id, dag.source, holder, holder == token)
            runs.append(info)
    finally:
        if own_runner:
            runner.close(wait=False)
        if own_claims and isinstance(claims, RedisEventClaims):
            claims.close()
    return TriggerResult(name, event_id, tuple(runs), unreadable)
