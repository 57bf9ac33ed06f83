"""The package layout is the architecture: few top-level modules, transport sealed in the
stores, the documented import paths working.

Like ``test_import_cycles.py``, these read the source with ``ast`` (function-local imports
count) and need no service.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from dagflow._moved import MOVED

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dagflow"
#: Most modules directly in dagflow/ (the rest live in packages by concern).
TOP_LEVEL_MAX = 12
#: Where redis and kombu may be imported: the stores, the publisher and the broker's view,
#: the Celery wiring, the collector and the one Redis URL parser.
TRANSPORT_ALLOWED = (
    "dagflow.stores",
    "dagflow.execution.publish",
    "dagflow.execution.consumer",
    "dagflow.events.collector",
    "dagflow.redis_url",
    "dagflow.celery_app",
)


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text())
    return found


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_few_modules_sit_at_the_top_of_the_package() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_MAX, top


def test_redis_and_kombu_are_imported_only_where_the_transport_lives() -> None:
    offenders = sorted(
        name
        for name, tree in modules().items()
        if any(n.split(".")[0] in ("redis", "kombu") for n in imported(tree))
        and not name.startswith(TRANSPORT_ALLOWED)
    )
    assert offenders == []


def test_dagflow_itself_uses_no_moved_import_path() -> None:
    users = sorted(
        (name, old) for name, tree in modules().items() for old in MOVED if old in imported(tree)
    )
    assert users == []


def test_every_import_in_the_readme_runs() -> None:
    text = (ROOT / "README.md").read_text()
    lines = re.findall(r"^from (dagflow[\w.]*) import (?:\(([^)]*)\)|([\w, ]+))", text, re.M)
    lines = [(module, grouped or plain) for module, grouped, plain in lines]
    assert len(lines) >= 5
    for module, names in lines:
        loaded = importlib.import_module(module)
        for name in filter(None, (n.strip() for n in names.replace("\n", " ").split(","))):
            assert hasattr(loaded, name), f"from {module} import {name}"


def test_old_import_paths_give_the_module_at_its_new_path() -> None:
    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new)


def test_a_celery_app_dagflow_did_not_wire_has_no_runtime() -> None:
    # Given a plain Celery app, and one that only got dagflow's tasks
    from celery import Celery

    from dagflow import tasks
    from dagflow.errors import ConfigError
    from dagflow.execution.runtime import runtime_for

    plain = Celery(set_as_current=False)
    registered = Celery(set_as_current=False)
    tasks.register(registered)
    # Then the first is a one-line configuration error, the second builds its runtime
    # from the environment when it is first needed
    with pytest.raises(ConfigError, match="make_app"):
        runtime_for(plain)
    assert callable(registered.dagflow_runtime_factory)
