"""Enforce a task's ``timeout_s`` on one attempt of a workflow.

In a prefork worker a task runs on the child process's main thread, so a ``SIGALRM`` timer
interrupts the workflow exactly as Celery's soft time limit would. Where there is no main
thread to interrupt (the embedded mode's thread pool), the workflow runs in a helper thread
and the attempt is abandoned at the deadline; Python cannot kill a thread, so that code
keeps running in the background until it returns, and its result is discarded.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from dagflow.errors import TaskTimeoutError

T = TypeVar("T")


def call_with_timeout(func: Callable[[], T], timeout_s: float | None, label: str) -> T:
    """Call ``func()``; raise :class:`TaskTimeoutError` if it runs past ``timeout_s`` seconds."""
    if timeout_s is None:
        return func()
    message = f"{label} exceeded timeout_s={timeout_s:g}"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _with_alarm(func, timeout_s, message)
    return _with_thread(func, timeout_s, message)


def _with_alarm(func: Callable[[], T], timeout_s: float, message: str) -> T:
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TaskTimeoutError(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return func()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _with_thread(func: Callable[[], T], timeout_s: float, message: str) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="dagflow-timeout", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TaskTimeoutError(message)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
