"""``celery -A dagflow beat``: a Beat scheduler that reads the schedules directory.

``celeryconfig.beat_scheduler`` names :class:`DagflowScheduler`, so no ``-S`` flag is
needed. Instead of Beat's own entry table and shelve file, each Beat tick runs dagflow's
:class:`~dagflow.scheduling.ticker.Ticker`: reload changed schedule files, claim the due
``{schedule_id, minute}`` pairs in Redis (each firing won is a ``PENDING`` job in Redis's
job queue), then drain at most ``SCHED_MAX_JOBS_PER_DRAIN`` jobs off that queue and send one
``dagflow.start_scheduled_run`` task per job. Any number of Beat processes can run at once
(for availability); the Redis claim makes each firing happen once. There is nothing to
persist locally, so ``--schedule``/``celerybeat-schedule`` files are not used.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import Scheduler

from dagflow.clock import utc_now
from dagflow.execution.runtime import runtime_for
from dagflow.execution.sweeper import Sweeper
from dagflow.scheduling.firing import START_TASK
from dagflow.scheduling.schedule_dir import ScheduleDir
from dagflow.scheduling.ticker import Clock, Ticker, drain, next_sleep
from dagflow.settings import Settings
from dagflow.wiring import minute_claims, state_recorder

logger = logging.getLogger("dagflow.scheduling.beat")


class DagflowScheduler(Scheduler):  # type: ignore[misc]
    """A Celery Beat scheduler driven by ``DAGFLOW_SCHEDULES_DIR`` (see the module doc)."""

    def setup_schedule(self) -> None:
        """Build the ticker from the environment (Beat calls this once, at start)."""
        self.settings = Settings.from_env()
        self.state = state_recorder(self.settings)
        self.directory = ScheduleDir(self.settings.schedules_dir)
        # The runtime's job store: Redis (a Beat without a broker is refused at beat_init).
        self.jobs = runtime_for(self.app).jobs
        self.ticker = Ticker(
            self.directory, minute_claims(self.settings), self.state, jobs=self.jobs
        )
        self.clock = Clock()
        # Recovery does not depend on Beat, but a deployment whose workers all run with
        # another app (or none yet) still gets its expired leases and due retries re-sent.
        self.sweeper = Sweeper(self.app)
        self.sweeper.start()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Claim what is due now, drain jobs and send them; return the seconds until the next
        tick."""
        tick_s = self.settings.sched_tick_ms / 1000
        try:
            self.ticker.tick(utc_now())
            firings = drain(self.jobs, self.settings.sched_max_jobs_per_drain)
        except Exception:
            logger.exception("dagflow: beat tick failed; trying again next tick")
            return tick_s
        for firing in firings:
            try:
                self.app.send_task(START_TASK, args=(firing.model_dump(),))
                self.jobs.sent([firing.job_id])
            except Exception:
                logger.exception(
                    "dagflow: could not send %s for %s (run %s)",
                    firing.schedule_id,
                    firing.scheduled_minute,
                    firing.run_id,
                )
        return next_sleep(tick_s, self.clock.seconds_to_next_minute())

    def close(self) -> None:
        """Stop the sweeper thread, then let Beat close (Beat calls this when it stops)."""
        sweeper = getattr(self, "sweeper", None)  # a lazy banner instance has none
        if sweeper is not None:
            sweeper.stop()
        super().close()

    @property
    def info(self) -> str:
        """The line ``celery beat`` prints at start."""
        # Beat builds a lazy instance (no setup_schedule) just to print its banner.
        return f"    . dagflow schedules -> {Settings.from_env().schedules_dir}"
