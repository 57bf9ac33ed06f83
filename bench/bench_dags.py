"""The DAG shapes the benchmarks run, and their statistics (pure: no Redis, no workers).

Kept apart from ``bench_core`` so other benchmarks can build the same DAGs (same seeds, so the
same edges) without importing ``bench_core``, which starts its own redis-server.
"""

from __future__ import annotations

import random
from typing import Any

from dagflow.dag.load import Dag, check_dag
from dagflow.dag.spec import parse_dag

Tasks = list[dict[str, Any]]


def _t(i: int) -> str:
    return f"t{i:05d}"


def chain_tasks(n: int, wf: str = "bench.noop", params: dict[str, Any] | None = None) -> Tasks:
    """``n`` tasks, each depending on the one before."""
    return [
        {"id": _t(i), "workflow_ref": wf, "params": params or {},
         "depends_on": [_t(i - 1)] if i else []}
        for i in range(n)
    ]  # fmt: skip


def fan_tasks(width: int) -> Tasks:
    """root -> ``width`` middle tasks -> sink."""
    mids = [{"id": f"m{i:05d}", "workflow_ref": "bench.noop", "depends_on": ["root"]}
            for i in range(width)]  # fmt: skip
    sink = {"id": "sink", "workflow_ref": "bench.noop", "depends_on": [m["id"] for m in mids]}
    return [{"id": "root", "workflow_ref": "bench.noop"}, *mids, sink]


def map_tasks(n: int) -> Tasks:
    """list (``n`` items) -> ``noop[*]`` mapped over it -> sink."""
    return [
        {"id": "list", "workflow_ref": "bench.list", "params": {"n": n}},
        {"id": "each", "workflow_ref": "bench.noop", "depends_on": ["list"], "map": "list.files"},
        {"id": "sink", "workflow_ref": "bench.noop", "depends_on": ["each"]},
    ]


def layered_tasks(
    levels: int, width: int, parents: int, seed: int = 1,
    wf: str = "bench.noop", params: dict[str, Any] | None = None,
) -> Tasks:  # fmt: skip
    """``levels`` x ``width`` tasks; each depends on ``parents`` random tasks of the level above."""
    rng = random.Random(seed)
    out: Tasks = []
    for lv in range(levels):
        for i in range(width):
            deps = (
                []
                if lv == 0
                else sorted(
                    f"l{lv - 1:02d}_{j:04d}" for j in rng.sample(range(width), min(parents, width))
                )
            )
            out.append({"id": f"l{lv:02d}_{i:04d}", "workflow_ref": wf, "params": params or {},
                        "depends_on": deps})  # fmt: skip
    return out


def random_tasks(n: int, seed: int = 2, window: int = 50, max_parents: int = 3) -> Tasks:
    """A random DAG: each task after the first few depends on 1..``max_parents`` of the
    ``window`` tasks before it, so parents are shared by several children and joins abound."""
    rng = random.Random(seed)
    out: Tasks = []
    for i in range(n):
        deps: list[str] = []
        if i >= 3:
            lo = max(0, i - window)
            k = rng.randint(1, min(max_parents, i - lo))
            deps = sorted(_t(j) for j in rng.sample(range(lo, i), k))
        out.append({"id": _t(i), "workflow_ref": "bench.noop", "depends_on": deps})
    return out


def random_levels_tasks(levels: int, wmin: int, wmax: int, s: float, seed: int = 3) -> Tasks:
    """Random DAG in ``levels`` levels of ``wmin..wmax`` sleep tasks: one parent in the level
    above (so depth = level) and up to two more from any earlier level."""
    rng = random.Random(seed)
    out: Tasks = []
    prev: list[str] = []
    earlier: list[str] = []
    for lv in range(levels):
        cur = [f"r{lv:02d}_{i:02d}" for i in range(rng.randint(wmin, wmax))]
        for tid in cur:
            deps: set[str] = set()
            if prev:
                deps.add(rng.choice(prev))
                deps.update(rng.sample(earlier, min(len(earlier), rng.randint(0, 2))))
            out.append({"id": tid, "workflow_ref": "bench.sleep", "params": {"s": s},
                        "depends_on": sorted(deps)})  # fmt: skip
        earlier += cur
        prev = cur
    return out


def make_dag(tasks: Tasks, name: str) -> Dag:
    """Validate and compile a DAG from task dicts (as a YAML file would give them)."""
    spec = parse_dag({"name": name, "tenant_id": "bench", "tasks": tasks}, source=f"{name}.yaml")
    return check_dag(spec, f"{name}.yaml", ["bench.noop", "bench.sleep", "bench.list", "bench.mb"])


def edges(tasks: Tasks) -> int:
    return sum(len(t.get("depends_on", [])) for t in tasks)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated between ranks."""
    ranked = sorted(values)
    pos = (len(ranked) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ranked) - 1)
    return ranked[lo] + (ranked[hi] - ranked[lo]) * (pos - lo)
