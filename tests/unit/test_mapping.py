"""The pure parts of ``map``: instance ids, the map reference, a parent's list, the results."""

from __future__ import annotations

import json

import pytest

from dagflow.dag.mapping import (
    base_task_id,
    instance_id,
    map_item,
    map_length,
    parse_map_ref,
    results_json,
    split_instance,
)
from dagflow.execution.sweeper import movable_tasks
from tests.support.dags import make_dag, task


def test_instance_ids_round_trip_and_never_name_a_task() -> None:
    assert instance_id("process", 3) == "process[3]"
    assert split_instance("process[3]") == ("process", 3)
    assert split_instance("a.b[12]") == ("a.b", 12)
    assert split_instance("process") == ("process", None)
    assert split_instance("process[x]") == ("process[x]", None)
    assert base_task_id("process[0]") == "process" and base_task_id("merge") == "merge"


@pytest.mark.parametrize(
    ("ref", "parents", "expected"),
    [
        ("list.files", ("list",), ("list", "files")),
        ("a.b.files", ("a", "a.b"), ("a.b", "files")),  # the longest parent id wins
        ("a.b.files", ("a",), ("a", "b.files")),
        ("other.files", ("list",), None),
        ("list.", ("list",), None),
        ("list", ("list",), None),
    ],
)
def test_parse_map_ref_against_direct_parents(
    ref: str, parents: tuple[str, ...], expected: tuple[str, str] | None
) -> None:
    assert parse_map_ref(ref, parents) == expected


def test_map_length_or_a_one_line_error_naming_task_and_key() -> None:
    assert map_length("p", "l", "files", {"files": [1, 2]}) == 2
    assert map_length("p", "l", "files", {"files": []}) == 0
    missing = map_length("p", "l", "files", {"other": 1})
    assert missing == "MapError: Task 'p' maps over l.files, but the output of 'l' has no such key"
    assert "holds dict, not a list" in str(map_length("p", "l", "files", {"files": {}}))
    assert "returned no mapping" in str(map_length("p", "l", "files", [1]))
    over = map_length("p", "l", "files", {"files": [0] * 4}, limit=3)
    assert (
        over == "MapError: Task 'p' maps over l.files, a list of 4 items, over DAGFLOW_MAP_MAX (3)"
    )


def test_map_item_and_results_json() -> None:
    assert map_item({"files": ["a", "b"]}, "files", 1) == "b"
    with pytest.raises(LookupError):
        map_item({"files": ["a"]}, "files", 1)
    outs = ['{"i":0}', None, '{"i":2}']
    assert json.loads(results_json(outs)) == {"results": [{"i": 0}, None, {"i": 2}]}
    assert results_json([]) == '{"results":[]}'


def test_the_sweeper_resends_pending_instances_only_up_to_max_parallel() -> None:
    # Given a map capped at 2 whose started instances were all lost (nothing live)
    dag = make_dag(
        [
            task("l", "test.list"),
            task("p", "test.map_item", ("l",), map="l.files", max_parallel=2),
            task("m", "test.collect", ("p",)),
        ]
    )
    plan = dag.compiled.plan()
    states = {"l": "ok", "p": "mapped", "m": "pending"}
    states |= {f"p[{i}]": "pending" for i in range(5)}
    states["p[0]"] = "ok"
    # Then the two lowest pending instances are sent again, never the mapped task itself
    assert movable_tasks(plan, states) == ["p[1]", "p[2]"]
    states["p[1]"] = "running"
    assert movable_tasks(plan, states) == ["p[1]", "p[2]"]
