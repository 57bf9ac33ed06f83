"""The Celery app of the benchmark worker: dagflow's app plus the raw baseline tasks.

``celery -A bench.bench_app worker`` runs ``dagflow.step`` and the raw tasks in the same
processes, so dagflow and raw Celery are measured on the same workers. When
``BENCH_READY_FILE`` is set the worker touches it once it is consuming.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from bench.bench_workflows import register_raw
from dagflow.celery_app import make_app

app = make_app()
register_raw(app)


@worker_ready.connect(weak=False)
def _ready(**_: Any) -> None:
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        Path(path).write_text("ready\n")
