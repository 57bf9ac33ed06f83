"""Pure folds over events: the dashboard's tables, the rollup behind them, a run's timeline.

The seed's import works: ``from dagflow.analytics import load_events, summarize_tasks,
summarize_dags, summarize_schedules, per_tenant_load``.
"""

from dagflow.analytics.tables import (
    Record,
    for_tenant,
    per_tenant_load,
    schedule_by_run,
    summarize,
    summarize_dags,
    summarize_schedules,
    summarize_tasks,
)
from dagflow.events.log import load_events

__all__ = [
    "Record",
    "for_tenant",
    "load_events",
    "per_tenant_load",
    "schedule_by_run",
    "summarize",
    "summarize_dags",
    "summarize_schedules",
    "summarize_tasks",
]
