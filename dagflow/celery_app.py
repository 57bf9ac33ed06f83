"""Building the Celery app: one factory used by workers, the CLI, the embedded mode and tests.

``celery -A dagflow worker`` finds ``dagflow.app``, built from ``celeryconfig`` and the
environment. Tests and the embedded mode build their own app with :func:`make_app`, so a
process can hold apps for different brokers without global state.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any

from dagflow import tasks, workflows
from dagflow.dag.compile import STEP_TASK
from dagflow.errors import ConfigError
from dagflow.execution import outcome
from dagflow.execution.runtime import runtime_for
from dagflow.execution.sweeper import SweeperStep
from dagflow.redis_url import transport_options
from dagflow.settings import Settings
from dagflow.wiring import build_runtime

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Exit code of a worker or Beat that refuses to start for a configuration error.
EXIT_CONFIG = 3
#: Poll the in-memory broker every millisecond; Celery's default (1 s) makes it unusable.
MEMORY_POLLING_INTERVAL_S = 0.001


def _quiet_cancel_warning(**_: Any) -> None:
    """Drop the warning Celery logs at every lost broker connection about its 6.0 default.

    celeryconfig sets ``worker_cancel_long_running_tasks_on_connection_loss`` to False on
    purpose. Run when the worker is ready: Celery's logging setup puts an ``always`` filter
    for its deprecation warnings in front of any filter set earlier.
    """
    warnings.filterwarnings(
        "ignore", message=r"\s*In Celery 5.1 we introduced an optional breaking change"
    )


def celery_settings(settings: Settings) -> dict[str, Any]:
    """Celery keys from ``celeryconfig`` with the broker and backend taken from ``settings``."""
    module = importlib.import_module("celeryconfig")
    conf = {k: getattr(module, k) for k in dir(module) if k.islower() and not k.startswith("_")}
    conf["broker_url"] = settings.broker_url or "memory://"
    conf["result_backend"] = settings.result_backend
    # celeryconfig's options were built from the environment; ``settings`` may name other
    # URLs (a test's, the embedded mode's), so their Sentinel primary comes from here.
    for key, url in (
        ("broker_transport_options", settings.broker_url),
        ("result_backend_transport_options", settings.result_backend),
    ):
        options = {k: v for k, v in (conf.get(key) or {}).items() if k != "master_name"}
        conf[key] = {**options, **transport_options(url, settings.redis_master_name)}
    if settings.embedded:
        # celeryconfig's Redis transport options mean nothing to the in-memory transport.
        conf["broker_transport_options"] = {"polling_interval": MEMORY_POLLING_INTERVAL_S}
        conf["result_backend"] = None
    return {k: v for k, v in conf.items() if not callable(v) and not isinstance(v, type)}


def make_app(settings: Settings | None = None, *, main: str = "dagflow") -> Celery:
    """Return a Celery app configured for ``settings`` with ``dagflow.step`` registered.

    Workflows from ``DAGFLOW_WORKFLOWS`` and entry points are imported when a worker starts
    (and by the CLI before validating), so every process knows the same names.
    """
    from celery import Celery
    from celery.signals import beat_init, celeryd_init, task_revoked, worker_init, worker_ready

    settings = settings or Settings.from_env()
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_settings(settings))
    tasks.register(app)
    app.dagflow_settings = settings
    app.dagflow_runtime_factory = lambda: build_runtime(settings)

    def _load_workflows(sender: Any = None, instance: Any = None, **_: Any) -> None:
        owner = getattr(instance, "app", None) or getattr(sender, "app", None)
        if owner is not app:
            return
        try:
            workflows.load(settings.workflow_modules)
        except ConfigError as exc:
            # A worker that cannot run the workflows must not say "ready" and then fail
            # every step of a DAG the CLI validated as fine.
            sys.stderr.write(f"dagflow: worker refuses to start: {exc.one_line()}\n")
            raise SystemExit(EXIT_CONFIG) from None

    def _on_revoked(
        sender: Any = None, request: Any = None, terminated: bool = False, **kw: Any
    ) -> None:
        if getattr(sender, "app", None) is not app or getattr(sender, "name", "") != STEP_TASK:
            return
        from celery.worker import state as worker_state

        run_id, task_id, token = request.args[0], request.args[1], str(request.id)
        try:
            if token not in worker_state.revoked:
                # Celery cancelled it itself (a lost broker connection): not an operator's
                # decision. Its process is gone, so let the next delivery take over now.
                runtime_for(app).store.release(run_id, task_id, token)
                return
            signum = abs(int(kw.get("signum") or 0))
            how = (
                f"was terminated from outside (signal {signum})"
                if terminated
                else ("was revoked from outside")
            )
            outcome.abort_step(app, run_id, task_id, token, how)
        except Exception:
            logger.exception("dagflow: could not record the revoke of %s/%s", run_id, task_id)

    def _refuse_embedded(sender: Any = None, instance: Any = None, **_: Any) -> None:
        owner = getattr(instance, "app", None) or getattr(sender, "app", None)
        if settings.embedded and owner is app:
            sys.stderr.write(
                "dagflow: DAGFLOW_BROKER_URL is not set. Workers and beat need a broker they "
                "share with each other, e.g. DAGFLOW_BROKER_URL=redis://127.0.0.1:6379/0 "
                "(`dagflow run` and `dagflow schedule` without a broker run DAGs "
                "on their own embedded worker).\n"
            )
            raise SystemExit(EXIT_CONFIG)

    celeryd_init.connect(_refuse_embedded, weak=False)
    celeryd_init.connect(_load_workflows, weak=False)
    worker_init.connect(_load_workflows, weak=False)
    beat_init.connect(_refuse_embedded, weak=False)
    task_revoked.connect(_on_revoked, weak=False)
    worker_ready.connect(_quiet_cancel_warning, weak=False)
    app.steps["worker"].add(SweeperStep)
    return app
