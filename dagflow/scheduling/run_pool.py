"""A bounded pool of scheduled runs for ``dagflow schedule``: ``SCHED_MAX_PARALLEL`` at once."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from dagflow.errors import DagflowError
from dagflow.scheduling.firing import Firing

logger = logging.getLogger(__name__)


class RunQueue:
    """Drives scheduled runs, at most ``max_parallel`` at once; the rest wait, in order.

    ``SCHED_MAX_PARALLEL`` is enforced here, per scheduler process: each of the
    ``max_parallel`` threads starts one firing and waits for its run to end before taking
    the next, so queued firings are delayed, never dropped.

    Args:
        start: Submits one firing's run and returns a waiter that blocks until the run
            ends and says whether it succeeded.
        max_parallel: How many runs at once.
    """

    def __init__(self, start: Callable[[Firing], Callable[[], bool]], max_parallel: int) -> None:
        self._start = start
        self._queue: queue.Queue[Firing | None] = queue.Queue()
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self.running = 0
        self._submitting = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"dagflow-sched-{i}", daemon=True)
            for i in range(max_parallel)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, firing: Firing) -> None:
        """Queue a firing."""
        self._queue.put(firing)

    @property
    def waiting(self) -> int:
        """Firings queued and not started yet."""
        return self._queue.qsize()

    def join(
        self,
        abort: threading.Event | None = None,
        submitted_only: bool = False,
        poll_s: float = 0.05,
    ) -> bool:
        """Wait until every queued firing has run; False if ``abort`` was set first.

        Args:
            abort: Stop waiting when set (a second Ctrl+C).
            submitted_only: Return once every firing is submitted, without waiting for the
                runs to end: with a broker they finish on the workers all the same.
            poll_s: Seconds between checks.
        """
        while self._queue.unfinished_tasks and not (
            submitted_only and self._queue.qsize() == 0 and self._submitting == 0
        ):
            if abort is not None and abort.wait(poll_s):
                return False
            if abort is None:
                time.sleep(poll_s)
        return True

    def close(self) -> None:
        """Stop the threads once the queue is empty (daemon threads: never blocks exit)."""
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            firing = self._queue.get()
            if firing is None:
                self._queue.task_done()
                return
            with self._lock:
                self.running += 1
                self._submitting += 1
            ok = False
            try:
                try:
                    waiter = self._start(firing)
                finally:
                    with self._lock:
                        self._submitting -= 1
                ok = waiter()
            except DagflowError as exc:
                logger.error("dagflow: schedule %s: %s", firing.schedule_id, exc.one_line())
            except Exception:
                logger.exception("dagflow: schedule %s could not run", firing.schedule_id)
            finally:
                with self._lock:
                    self.running -= 1
                    if ok:
                        self.succeeded += 1
                    else:
                        self.failed += 1
                self._queue.task_done()
