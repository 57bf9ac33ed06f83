"""The scheduler loop of ``dagflow schedule``: tick, drain jobs, start and follow their runs.

Each firing won becomes a ``PENDING`` job; each tick then drains at most
``SCHED_MAX_JOBS_PER_DRAIN`` jobs and runs them (at most ``SCHED_MAX_PARALLEL`` at once, in
:class:`~dagflow.scheduling.run_pool.RunQueue`). :meth:`Driver.once` waits for the jobs it
drained to end, their retries included; jobs it did not drain stay ``PENDING`` in Redis for
the next drain (without Redis they die with the process). :meth:`Driver.serve` ticks until
it is stopped. Beat (:mod:`dagflow.scheduling.beat`) ticks the same :class:`Ticker` and
sends each firing to the workers instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dagflow.client.runner import Runner
from dagflow.events.state_store import StateRecorder
from dagflow.scheduling.firing import Firing
from dagflow.scheduling.job import JobStatus
from dagflow.scheduling.run_pool import RunQueue
from dagflow.scheduling.schedule_dir import ScheduleDir
from dagflow.scheduling.starter import start_firing
from dagflow.scheduling.ticker import Clock, Ticker, drain, serve
from dagflow.settings import Settings
from dagflow.wiring import minute_claims

logger = logging.getLogger("dagflow.scheduler")


@dataclass(frozen=True)
class TickResult:
    """What one :meth:`Driver.once` did.

    Attributes:
        enqueued: Firings this tick won (each a new job).
        drained: Jobs it took off the queue and ran.
        succeeded: Of those, jobs that ended ``SUCCESS``.
        failed: Of those, jobs that did not.
        pending: Jobs still waiting in the queue.
    """

    enqueued: int
    drained: int
    succeeded: int
    failed: int
    pending: int


class Driver:
    """Ticks the schedules of ``schedules`` and drives their runs from this process.

    Args:
        settings: The process's settings.
        state: Where scheduler lines go.
        schedules: The schedule directory (already read once).
        timeout: Seconds to wait for each job at most (None: no limit).
        loglevel: The embedded worker's log level (without a broker).
    """

    def __init__(
        self,
        settings: Settings,
        state: StateRecorder,
        schedules: ScheduleDir,
        *,
        timeout: float | None = None,
        loglevel: str = "CRITICAL",
    ) -> None:
        self.settings = settings
        self.schedules = schedules
        self.timeout = timeout
        self.runner = Runner(settings)
        self.jobs = self.runner.runtime.jobs
        self.state = state
        self.ticker = Ticker(schedules, minute_claims(settings), state, jobs=self.jobs)
        self.runner.start_embedded_worker(loglevel=loglevel)
        self._submit_lock = threading.Lock()
        self.runs = RunQueue(self._start, settings.sched_max_parallel)

    def once(self, now: datetime) -> TickResult:
        """One tick at ``now``; run the jobs drained and wait for them to end."""
        firings = self.ticker.tick(now)
        drained = drain(self.jobs, self.settings.sched_max_jobs_per_drain)
        for firing in drained:
            self.runs.put(firing)
        self.runs.join()
        return TickResult(
            len(firings), len(drained), self.runs.succeeded, self.runs.failed, self.jobs.queued()
        )

    def serve(self, clock: Clock, stop: threading.Event, abort: threading.Event) -> bool:
        """Tick every ``SCHED_TICK_MS`` until ``stop``; then wait for the runs this process
        queued (with a broker, runs already sent finish on the workers). Returns False if
        ``abort`` cut that wait short."""
        limit = self.settings.sched_max_jobs_per_drain
        parallel = self.settings.sched_max_parallel
        logger.info(
            "dagflow: serving %s (%d schedules)",
            self.schedules.directory,
            len(self.schedules.schedules),
        )
        # Drain only what this process can start soon: the rest waits in the job queue
        # (in Redis, where another scheduler may take it), not in this process.
        serve(
            self.ticker,
            clock,
            self.settings.sched_tick_ms / 1000,
            stop,
            self.runs.put,
            lambda: drain(self.jobs, min(limit, parallel * 2 - self.runs.waiting)),
        )
        logger.info(
            "dagflow: stopping, %d runs queued, %d running", self.runs.waiting, self.runs.running
        )
        if not self.runs.join(abort, submitted_only=not self.runner.embedded):
            logger.warning("dagflow: second signal, leaving %d queued runs", self.runs.waiting)
            return False
        return True

    def close(self) -> None:
        """Stop the run pool and the embedded worker."""
        self.runs.close()
        self.runner.close(wait=False)

    def _start(self, firing: Firing) -> Callable[[], bool]:
        with self._submit_lock:  # one submit at a time: Celery producers are not thread-safe
            start_firing(self.runner.app, self.runner.runtime, firing, self.state)
            self.jobs.sent([firing.job_id])

        def wait() -> bool:
            status = wait_job(self.runner, firing, self.timeout)
            logger.info("dagflow: job %s of %s: %s", firing.job_id, firing.schedule_id, status)
            return status == "SUCCESS"

        return wait


def wait_job(runner: Runner, firing: Firing, timeout: float | None, poll_s: float = 0.1) -> str:
    """Wait until the firing's job ends, its retries included; return its final status.

    Returns the status it had when ``timeout`` passed if it had not ended by then.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    jobs = runner.runtime.jobs
    while True:
        job = jobs.get(firing.job_id)
        if job is None:
            return "UNKNOWN"
        if job.status.ended or (deadline is not None and time.monotonic() > deadline):
            return job.status.value
        if job.status == JobStatus.RUNNING:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.01)
            try:
                runner.attach(job.run_id).wait(timeout=left)
            except Exception as exc:  # the job is the authority: look at it again
                logger.debug("dagflow: waiting for run %s: %s", job.run_id, exc)
                time.sleep(poll_s)
        else:
            time.sleep(poll_s)
