"""The workflow registry: the only place a ``workflow_ref`` is resolved.

A workflow is a Python callable that takes the task's merged params (its own ``params``
plus namespaced upstream outputs) and returns a JSON-serializable value::

    import dagflow

    @dagflow.workflow("count_words")
    def count_words(params):
        return {"words": len(params["text"].split())}

A workflow that accepts a second positional argument also gets the run's
:class:`~dagflow.workflows.context.RunContext` (run id, task id, attempt, fence, run-level
params, the schedule); its signature is inspected once, when it is registered.

Workflows are found in three places, and nowhere else (YAML never triggers an import):
the built-ins in :mod:`dagflow.workflows.builtin`, the modules named in ``DAGFLOW_WORKFLOWS``
(comma-separated), and the entry-point group ``dagflow.workflows``. The CLI and every worker
load the same three, so a name valid in ``dagflow validate`` is valid on the workers that
share the environment.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from dagflow.errors import ConfigError, UnknownWorkflowError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dagflow.workflows"


class Workflow(Protocol):
    """A user callable: merged params in, a JSON-serializable value out."""

    def __call__(self, params: Mapping[str, Any], /) -> Any: ...


F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Workflow] = {}
_with_context: dict[str, bool] = {}
_loaded_modules: set[str] = set()
_lock = threading.Lock()


def _fresh_lock_in_child() -> None:
    # A pool process forked while another thread held the registry's lock (loading a
    # module) would otherwise block on it forever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


def workflow(name: str) -> Callable[[F], F]:
    """Register the decorated callable as the workflow ``name``.

    Raises:
        ConfigError: ``name`` is already registered to a different callable.
    """

    def register(func: F) -> F:
        existing = _registry.get(name)
        if existing is not None and existing is not func:
            same = getattr(existing, "__qualname__", None) == getattr(func, "__qualname__", None)
            same = same and getattr(existing, "__module__", None) == getattr(
                func, "__module__", None
            )
            if not same:
                raise ConfigError(f"workflow '{name}' is already registered by {existing!r}")
        _registry[name] = func
        _with_context[name] = _accepts_context(func)
        return func

    return register


def _accepts_context(func: Callable[..., Any]) -> bool:
    """True if ``func`` can take a second positional argument (the run context)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it the old way
        return False
    positional = 0
    for p in parameters:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def takes_context(name: str) -> bool:
    """True if the workflow ``name`` is called with ``(params, ctx)``, not ``(params)``."""
    return _with_context.get(name, False)


def load(modules: tuple[str, ...] = ()) -> None:
    """Import the built-ins, ``modules`` and the ``dagflow.workflows`` entry points, once each.

    Raises:
        ConfigError: A module named in ``DAGFLOW_WORKFLOWS`` cannot be imported.
    """
    with _lock:
        if "dagflow.workflows.builtin" not in _loaded_modules:
            importlib.import_module("dagflow.workflows.builtin")
            _loaded_modules.add("dagflow.workflows.builtin")
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    entry.load()
                except Exception as exc:  # a broken plugin must not hide the others
                    logger.warning("dagflow: workflow entry point %s failed: %s", entry.name, exc)
        if modules and os.getcwd() not in sys.path:
            # Like ``celery -A``: workflow modules are found in the current directory.
            sys.path.insert(0, os.getcwd())
        for module in modules:
            if module in _loaded_modules:
                continue
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(
                    f"DAGFLOW_WORKFLOWS: cannot import module '{module}': {exc}"
                ) from None
            _loaded_modules.add(module)


def names() -> list[str]:
    """Registered workflow names, sorted."""
    return sorted(_registry)


def get(name: str) -> Workflow:
    """Return the workflow registered as ``name``.

    Raises:
        UnknownWorkflowError: No workflow has that name.
    """
    try:
        return _registry[name]
    except KeyError:
        raise UnknownWorkflowError(
            f"Unknown workflow: {name} (known: {', '.join(names()) or 'none'})"
        ) from None
