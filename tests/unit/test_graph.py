"""Graph analysis over a table of DAG shapes: order, roots, descendants, critical path."""

from __future__ import annotations

import itertools

import pytest

from dagflow.dag.graph import build_graph
from dagflow.dag.spec import parse_dag

SHAPES = {
    # name: (edges as child -> parents, expected critical path length)
    "single": ({"a": []}, 1),
    "chain": ({"a": [], "b": ["a"], "c": ["b"]}, 3),
    "diamond": ({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, 3),
    "shared join": ({"A": [], "B": [], "C": ["A"], "D": ["A", "B"]}, 2),
    "forest": ({"a": [], "b": [], "c": ["a"], "d": ["b"], "e": ["d"]}, 3),
    "file order reversed": ({"c": ["b"], "b": ["a"], "a": []}, 3),
}


def build(edges: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    tasks = [{"id": t, "workflow_ref": "w", "depends_on": deps} for t, deps in edges.items()]
    return build_graph(parse_dag({"name": "g", "tenant_id": "t", "tasks": tasks}))


@pytest.mark.parametrize(("edges", "critical"), SHAPES.values(), ids=SHAPES.keys())
def test_order_is_topological_and_critical_path_is_a_longest_chain(
    edges: dict[str, list[str]], critical: int
) -> None:
    graph = build(edges)
    position = {t: i for i, t in enumerate(graph.order)}
    assert sorted(graph.order) == sorted(edges)
    for child, parents in edges.items():
        assert all(position[p] < position[child] for p in parents)
    path = graph.critical_path()
    assert len(path) == critical
    for parent, child in itertools.pairwise(path):
        assert parent in edges[child]


def test_roots_children_and_descendants() -> None:
    graph = build(SHAPES["shared join"][0])
    assert graph.roots == ("A", "B")
    assert graph.children["A"] == ("C", "D")
    assert graph.descendants("B") == {"D"}
    assert graph.descendants("C") == set()


def test_order_keeps_file_order_between_independent_tasks() -> None:
    graph = build({"z": [], "y": [], "x": ["z"]})
    assert graph.order == ("z", "y", "x")


def test_duplicate_dependency_is_counted_once() -> None:
    graph = build({"a": [], "b": ["a", "a"]})
    assert graph.parents["b"] == ("a",)


@pytest.mark.timeout(10)
def test_ten_thousand_tasks_build_quickly() -> None:
    # Not a benchmark (it takes well under a second): the deadline catches an algorithm that
    # turned quadratic or loops, instead of the suite's global 300 s.
    edges = {f"t{i}": [f"t{i - 1}", f"t{i // 2}"] if i else [] for i in range(10_000)}
    edges = {t: sorted(set(d) - {t}) for t, d in edges.items()}
    graph = build(edges)
    assert len(graph.order) == 10_000
    assert len(graph.critical_path()) == 10_000
