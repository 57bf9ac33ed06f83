"""Import paths that moved when the flat modules became packages, kept working.

``dagflow.runner``, ``dagflow.state_store``, ``dagflow.jobs`` and ``dagflow.beat`` were
documented (the README, the seed, ``beat_scheduler = "dagflow.beat:DagflowScheduler"`` in a
deployment's Celery config) before they moved. Importing an old path gives the very module
at its new path (the same object: patching one patches the other). dagflow's own code uses
the new paths (``tests/unit/test_layout.py``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: Old import path -> where the module lives now.
MOVED = {
    "dagflow.runner": "dagflow.client.runner",
    "dagflow.state_store": "dagflow.events.state_store",
    "dagflow.jobs": "dagflow.scheduling.job_hooks",
    "dagflow.beat": "dagflow.scheduling.beat",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new path."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at its new path ran when it was imported."""


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
