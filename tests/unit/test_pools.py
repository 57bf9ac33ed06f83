"""Pools' pure parts: DAGFLOW_POOLS, the ``pool`` field, the plan, the status line, the panel."""

from __future__ import annotations

import json

import pytest

from dagflow.dag.plan import RunPlan
from dagflow.dag.spec import check_pools, parse_dag
from dagflow.dashboard.layout import queue_panel
from dagflow.errors import ConfigError, DagValidationError, SpecError
from dagflow.execution.pools import base_task_id, pool_of
from dagflow.settings import Settings
from dagflow.stores.pools import PoolUse
from dagflow.stores.queue_stats import QueueStats


@pytest.mark.parametrize(
    ("task_id", "base"),
    [("process", "process"), ("process[3]", "process"), ("a.b-c[10]", "a.b-c")],
)
def test_base_task_id(task_id: str, base: str) -> None:
    assert base_task_id(task_id) == base


def test_dagflow_pools_parses_sizes() -> None:
    settings = Settings.from_env({"DAGFLOW_POOLS": " warehouse=4, api=2 ,"})
    assert settings.pools == (("warehouse", 4), ("api", 2))
    assert (settings.pool_size("api"), settings.pool_size("nope")) == (2, None)
    assert Settings.from_env({}).pools == ()


@pytest.mark.parametrize("raw", ["warehouse", "warehouse=0", "warehouse=x", "=4", "-w=2", "a b=1"])
def test_a_malformed_dagflow_pools_is_one_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^DAGFLOW_POOLS: .* is not pool=N"):
        Settings.from_env({"DAGFLOW_POOLS": raw})


def spec_with(**fields: object) -> dict[str, object]:
    return {"name": "d", "tenant_id": "t", "tasks": [{"id": "a", "workflow_ref": "w", **fields}]}


def test_the_pool_field_is_a_pool_name() -> None:
    assert parse_dag(spec_with(pool="warehouse")).pools == {"a": "warehouse"}
    with pytest.raises(SpecError) as bad:
        parse_dag(spec_with(pool="no pool"), source="x.yaml")
    assert bad.value.lines()[0].startswith("x.yaml, task 'a', field 'pool': DagValidationError:")
    with pytest.raises(SpecError):
        parse_dag(spec_with(pool=3))


def test_a_pool_without_a_size_names_file_task_and_field() -> None:
    spec = parse_dag(spec_with(pool="warehouse"))
    check_pools(spec, "x.yaml", {"warehouse": 2})
    with pytest.raises(DagValidationError) as bad:
        check_pools(spec, "x.yaml", {"api": 2})
    assert bad.value.lines() == [
        "x.yaml, task 'a', field 'pool': DagValidationError: pool 'warehouse' has no size "
        "in DAGFLOW_POOLS (known: api; set e.g. DAGFLOW_POOLS=warehouse=4)"
    ]


def plan(pools: dict[str, str] | None) -> RunPlan:
    tasks = {"a": ("w", {}, 0, None), "b": ("w", {}, 0, None)}
    return RunPlan.build(
        "d", "t", tasks, {"a": (), "b": ("a",)}, {"a": ("b",), "b": ()}, pools=pools
    )


def test_a_plan_with_a_pool_is_version_5_and_round_trips() -> None:
    pooled = plan({"b": "warehouse"})
    raw = pooled.to_json()
    assert json.loads(raw)["version"] == 5
    back = RunPlan.from_json(raw)
    assert back.pools == {"b": "warehouse"} and back.tasks["a"].pool is None
    assert (pool_of(back, "b"), pool_of(back, "b[7]"), pool_of(back, "a")) == (
        "warehouse",
        "warehouse",
        None,
    )
    assert json.loads(plan(None).to_json())["version"] == 3


def test_the_status_line_of_a_parked_step() -> None:
    line = PoolUse(size=4, in_use=4, waiting=3).describe("warehouse")
    assert line == "waiting for pool 'warehouse' (4/4 in use, 3 waiting)"


def test_the_queue_panel_shows_each_pools_use() -> None:
    stats = QueueStats(pools={"warehouse": (4, 4, 3), "api": (0, 2, 0)})
    text = str(queue_panel(stats, {}, []))
    assert "queue-pools" in text
    for cell in ("warehouse", "api", "Waiting"):
        assert cell in text
    assert "queue-pools" not in str(queue_panel(QueueStats(), {}, []))
