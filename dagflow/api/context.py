"""What the API's routes share: the settings and the library's parts, built once per process.

One :class:`~dagflow.client.runner.Runner` (a Celery app and the run store) serves every
request: runs are started, read, cancelled and retried through its :class:`RunHandle`, the
client the CLI uses, so what the CLI shows (and hides) the API shows (and hides) too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagflow.client.handle import RunHandle
from dagflow.client.runner import Runner
from dagflow.dag.catalog import DagCatalog
from dagflow.errors import ApiError, ConfigError
from dagflow.events.feed import RunEventFeed
from dagflow.settings import Settings
from dagflow.stores.base import RunSnapshot
from dagflow.stores.idempotency import IdempotencyKeys
from dagflow.stores.jobs import JobStore
from dagflow.stores.tokens import ApiToken, TokenStore
from dagflow.wiring import idempotency_keys, job_store, token_store

if TYPE_CHECKING:
    from dagflow.stores.base import RunStore


@dataclass
class ApiContext:
    """The parts every route uses.

    Attributes:
        settings: The process's settings.
        runner: Starts runs and acts on them (its run store reads them).
        tokens: The API tokens.
        keys: The idempotency keys of ``POST /runs``.
        catalog: The DAGs of ``DAGFLOW_DAGS_DIR`` by name.
        jobs: The scheduled jobs.
        feed: Reads and follows a run's events.
    """

    settings: Settings
    runner: Runner
    tokens: TokenStore
    keys: IdempotencyKeys
    catalog: DagCatalog
    jobs: JobStore
    feed: RunEventFeed

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiContext:
        """Build every part for ``settings``.

        Raises:
            ConfigError: No Redis is configured: the API's runs, tokens and keys live there.
        """
        if settings.embedded:
            raise ConfigError(
                "dagflow api needs workers and Redis: set DAGFLOW_BROKER_URL (an embedded run "
                "would live only inside the API process)"
            )
        settings.require_redis_url()
        from dagflow import workflows

        workflows.load(settings.workflow_modules)
        return cls(
            settings=settings,
            runner=Runner(settings),
            tokens=token_store(settings),
            keys=idempotency_keys(settings),
            catalog=DagCatalog(settings.dags_dir, settings),
            jobs=job_store(settings),
            feed=RunEventFeed(settings),
        )

    @property
    def store(self) -> RunStore:
        """The run store."""
        return self.runner.runtime.store

    def visible_run(self, run_id: str, who: ApiToken) -> tuple[RunHandle, RunSnapshot]:
        """A handle and snapshot of a run the token may see.

        Raises:
            ApiError: 404 when the run is unknown, expired or another tenant's (the same
                answer, so a token cannot tell them apart).
        """
        snap = self.store.snapshot(run_id)
        if snap is None or not who.may_see(str(snap.meta.get("tenant_id") or "") or None):
            raise ApiError(
                f"run {run_id} not found", status=404, code="run_not_found", field="run_id"
            )
        return RunHandle(self.runner, run_id), snap

    def close(self) -> None:
        """Release the runner and the feed's connections."""
        self.feed.close()
        self.runner.close(wait=False)
