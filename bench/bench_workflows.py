"""Workflows (and raw Celery tasks) used only by the benchmarks in ``bench/``.

Workers load it with ``DAGFLOW_WORKFLOWS=bench.bench_workflows``. It imports nothing heavy,
so ``dagflow plan`` on a benchmark DAG pays only for dagflow itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagflow.workflows import workflow

if TYPE_CHECKING:
    from celery import Celery

#: The raw Celery task names registered by :func:`register_raw`.
RAW_NOOP = "bench.raw_noop"
RAW_MERGE = "bench.raw_merge"
RAW_SLEEP = "bench.raw_sleep"


@workflow("bench.noop")
def noop(params: Mapping[str, Any]) -> dict[str, Any]:
    """Do nothing and return a small dict (what a raw no-op task returns too)."""
    return {"ok": 1}


@workflow("bench.list")
def make_list(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{"files": [0, 1, ..., n-1]}``: the list a map benchmark fans out over."""
    return {"files": list(range(int(params["n"])))}


@workflow("bench.sleep")
def sleep(params: Mapping[str, Any]) -> dict[str, Any]:
    """Sleep ``params["s"]`` seconds: a task whose duration is known, for makespan."""
    time.sleep(float(params["s"]))
    return {"ok": 1}


def register_raw(app: Celery) -> None:
    """Register the raw Celery baseline tasks on ``app`` (the same app as ``dagflow.step``)."""

    @app.task(name=RAW_NOOP, shared=False)  # type: ignore[misc]
    def raw_noop(*_: Any) -> dict[str, Any]:
        return {"ok": 1}

    @app.task(name=RAW_MERGE, shared=False)  # type: ignore[misc]
    def raw_merge(results: Any = None, *_: Any) -> dict[str, Any]:
        return {"n": len(results) if isinstance(results, list) else 1}

    @app.task(name=RAW_SLEEP, shared=False)  # type: ignore[misc]
    def raw_sleep(*args: Any, s: float = 0.0) -> dict[str, Any]:
        time.sleep(s)
        return {"ok": 1}


@workflow("bench.mb")
def megabytes(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return about ``params["mb"]`` MB of JSON (``blob``) and how much its parent passed."""
    got = sum(len(v) for k, v in params.items() if k.endswith("__blob"))
    return {"blob": "x" * int(float(params["mb"]) * 1_000_000), "got": got}
