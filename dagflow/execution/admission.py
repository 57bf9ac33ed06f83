"""Which slots a run needs before it may start: ``max_active_runs`` per DAG, per tenant, and
``SCHED_MAX_PARALLEL`` for scheduled runs.

A run under no limit starts at once, as before. A run under one or more limits is stored
``pending`` and asks the run store to **admit** it: it takes one slot of each scope if every
scope has room and nobody waits for it, else it waits in its tenant's queue. When a run ends
it gives its slots back and the store **promotes** waiting runs: it visits the tenants with
waiting runs in turn (round robin), and in each tenant's queue takes the oldest run whose
scopes all have room. So a tenant with a thousand waiting runs cannot keep another tenant's
run waiting for more than one free slot, and runs of one scope start in the order they were
submitted.

The limits are read where a run is submitted and travel with it; the slots live in Redis,
so every client, scheduler and Beat process shares them. This module is pure: it only
computes slots (see :mod:`dagflow.stores.redis_admission` for the Lua side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagflow.keys import slot_key
from dagflow.settings import Settings

#: Labels that make a run a scheduled one (a firing, or a retry of a scheduled job).
SCHEDULED_LABELS = ("schedule_id", "job_id")
#: Labels of a run of ``dagflow backfill``: its backfill, and ``--max-active`` (its runs that
#: may run at once: a ``backfill:<id>`` scope).
BACKFILL_LABEL = "backfill_id"
BACKFILL_LIMIT_LABEL = "backfill_max_active"


@dataclass(frozen=True)
class Slot:
    """One limit a run is under.

    Attributes:
        scope: ``dag:<name>``, ``tenant:<id>``, ``scheduled`` or ``backfill:<id>``.
        limit: Runs of the scope that may run at once.
    """

    scope: str
    limit: int

    @property
    def key(self) -> str:
        """The Redis zset of the runs holding this scope's slots."""
        return slot_key(self.scope)

    def describe(self) -> str:
        """``tenant acme (2 at once)``: for status lines."""
        kind, _, name = self.scope.partition(":")
        what = f"{kind} {name}" if name else "scheduled runs"
        return f"{what} ({self.limit} at once)"


def run_slots(
    dag_name: str,
    tenant_id: str,
    labels: Mapping[str, Any],
    dag_limit: int | None,
    settings: Settings,
) -> list[Slot]:
    """The slots a run needs: one per limit that applies to it (none: it starts at once)."""
    slots = []
    if dag_limit:
        slots.append(Slot(f"dag:{dag_name}", dag_limit))
    tenant_limit = settings.tenant_limit(tenant_id)
    if tenant_limit:
        slots.append(Slot(f"tenant:{tenant_id}", tenant_limit))
    if any(labels.get(k) for k in SCHEDULED_LABELS):
        slots.append(Slot("scheduled", settings.sched_max_parallel))
    backfill_limit = labels.get(BACKFILL_LIMIT_LABEL)
    if labels.get(BACKFILL_LABEL) and backfill_limit:
        slots.append(Slot(f"backfill:{labels[BACKFILL_LABEL]}", int(backfill_limit)))
    return slots


def slots_to_json(slots: Sequence[Slot]) -> list[list[Any]]:
    """``[[scope, limit], ...]``: how a run's slots are kept in its metadata."""
    return [[s.scope, s.limit] for s in slots]


def slots_from_json(raw: Any) -> list[Slot]:
    """Inverse of :func:`slots_to_json` (an empty list for a run under no limit)."""
    return [Slot(str(scope), int(limit)) for scope, limit in raw or []]


def waiting_line(slots: Sequence[Slot]) -> str:
    """``waiting for a slot: dag nightly (1 at once), tenant acme (2 at once)``; without the
    slots (an older run's metadata), ``waiting for a slot``."""
    if not slots:
        return "waiting for a slot"
    return "waiting for a slot: " + ", ".join(s.describe() for s in slots)
