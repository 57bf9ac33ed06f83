"""The Celery app of the benchmark worker: dagflow's app plus the raw baseline tasks.

``celery -A bench.bench_app worker`` runs ``dagflow.step`` and the raw tasks in the same
processes, so dagflow and raw Celery are measured on the same workers. It runs at
``-l warning`` (no log line per task), so it prints `` ready.`` itself once it is consuming,
which is what :func:`tests.support.processes.start_worker` waits for.
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import worker_ready

from bench.bench_workflows import register_raw
from dagflow.celery_app import make_app

app = make_app()
register_raw(app)


@worker_ready.connect(weak=False)
def _ready(**_: Any) -> None:
    print("bench worker ready.", file=sys.stderr, flush=True)
