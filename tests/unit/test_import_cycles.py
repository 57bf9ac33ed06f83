"""dagflow's modules import each other without a cycle (STYLE: a lazy import that dodges a
cycle is a cycle).

Every ``import`` and ``from ... import`` in ``dagflow/`` counts, function-local ones included;
only ``if TYPE_CHECKING:`` blocks are left out (they never run). ``from dagflow.x import y``
is an edge to ``dagflow.x.y`` when that is a module, else to ``dagflow.x``; a package is its
``__init__`` (``from dagflow import workflow`` is an edge to ``dagflow/__init__.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dagflow"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute names imported anywhere in ``tree`` except under ``if TYPE_CHECKING:``."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            names.extend(f"{prefix}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the dagflow modules it imports (a package stands for its ``__init__``)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}

    def resolve(name: str) -> set[str]:
        # "dagflow.x.y" is a module, or an object of the module "dagflow.x".
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return {name} if name else set()

    for module, path in paths.items():
        tree = ast.parse(path.read_text(), str(path))
        for name in imported_names(tree, module, path.name == "__init__.py"):
            if name == "dagflow" or name.startswith("dagflow."):
                graph[module] |= resolve(name) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := dfs(start)):
            return found
    return None


def test_finder_sees_function_local_imports_and_reports_the_path() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dagflow import hidden\n"
        "def f():\n    from .b import g\n"
    )
    assert imported_names(tree, "dagflow.a", False) == ["typing.TYPE_CHECKING", "dagflow.b.g"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dagflow_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
