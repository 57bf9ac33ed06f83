"""Building the Celery app: one factory used by workers, the CLI, the embedded mode and tests.

``celery -A dagflow worker`` finds ``dagflow.app``, built from ``celeryconfig`` and the
environment. Tests and the embedded mode build their own app with :func:`make_app`, so a
process can hold apps for different brokers without global state.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from dagflow import tasks, workflows
from dagflow.firing import run_finished_hook
from dagflow.runtime import Runtime
from dagflow.settings import Settings
from dagflow.state_store import JsonlStateStore

if TYPE_CHECKING:
    from celery import Celery

#: Poll the in-memory broker every millisecond; Celery's default (1 s) makes it unusable.
MEMORY_POLLING_INTERVAL_S = 0.001


def celery_settings(settings: Settings) -> dict[str, Any]:
    """Celery keys from ``celeryconfig`` with the broker and backend taken from ``settings``."""
    module = importlib.import_module("celeryconfig")
    conf = {k: getattr(module, k) for k in dir(module) if k.islower() and not k.startswith("_")}
    conf["broker_url"] = settings.broker_url or "memory://"
    conf["result_backend"] = settings.result_backend
    if settings.embedded:
        # celeryconfig's Redis transport options mean nothing to the in-memory transport.
        conf["broker_transport_options"] = {"polling_interval": MEMORY_POLLING_INTERVAL_S}
        conf["result_backend"] = None
    return {k: v for k, v in conf.items() if not callable(v) and not isinstance(v, type)}


def build_runtime(settings: Settings) -> Runtime:
    """The runtime of an app made for ``settings``, with scheduling's run-finished hook."""
    runtime = Runtime.from_settings(settings)
    runtime.run_finished_hooks.append(run_finished_hook(JsonlStateStore(settings.state_path)))
    return runtime


def make_app(settings: Settings | None = None, *, main: str = "dagflow") -> Celery:
    """Return a Celery app configured for ``settings`` with ``dagflow.step`` registered.

    Workflows from ``DAGFLOW_WORKFLOWS`` and entry points are imported when a worker starts
    (and by the CLI before validating), so every process knows the same names.
    """
    from celery import Celery
    from celery.signals import beat_init, celeryd_init, worker_init

    settings = settings or Settings.from_env()
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_settings(settings))
    tasks.register(app)
    app.dagflow_settings = settings
    app.dagflow_runtime_factory = lambda: build_runtime(settings)

    def _load_workflows(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            workflows.load(settings.workflow_modules)

    def _refuse_embedded(sender: Any = None, instance: Any = None, **_: Any) -> None:
        owner = getattr(instance, "app", None) or getattr(sender, "app", None)
        if settings.embedded and owner is app:
            sys.stderr.write(
                "dagflow: DAGFLOW_BROKER_URL is not set. Workers and beat need a broker they "
                "share with each other, e.g. DAGFLOW_BROKER_URL=redis://127.0.0.1:6379/0 "
                "(`dagflow run` and `dagflow schedule` without a broker run DAGs "
                "on their own embedded worker).\n"
            )
            raise SystemExit(2)

    worker_init.connect(_load_workflows, weak=False)
    celeryd_init.connect(_refuse_embedded, weak=False)
    beat_init.connect(_refuse_embedded, weak=False)
    return app
