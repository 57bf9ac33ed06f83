"""A prefork pool process never inherits a lock held by a thread of its parent: the
runtime's, the event log file's and the workflow registry's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dagflow import workflows
from dagflow.events import jsonl
from dagflow.execution import runtime
from dagflow.settings import Settings
from dagflow.wiring import build_runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_a_forked_child_gets_fresh_runtime_locks() -> None:
    # Given the worker's main process with its locks held by a thread (the sweeper building
    # the runtime, reading a plan) at the moment the pool forks
    rt = build_runtime(Settings())
    rt._lock.acquire()
    runtime._attach_lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the pool process: every lock can be taken at once
            free = rt._lock.acquire(timeout=1) and runtime._attach_lock.acquire(timeout=1)
            os._exit(0 if free else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        rt._lock.release()
        runtime._attach_lock.release()
    assert os.waitstatus_to_exitcode(status) == 0


def _free_in_child(held: Callable[[], object]) -> bool:
    """Fork while the lock ``held()`` returns is held; True if the child could take it."""
    lock = held()
    lock.acquire()  # type: ignore[attr-defined]
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if held().acquire(timeout=1) else 1)  # type: ignore[attr-defined]
        _, status = os.waitpid(pid, 0)
    finally:
        lock.release()  # type: ignore[attr-defined]
    return os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_can_append_to_an_event_file_a_thread_was_writing(tmp_path: Path) -> None:
    log = jsonl.AppendFile(tmp_path / "events.jsonl")
    assert _free_in_child(lambda: log._lock)


def test_a_forked_child_can_load_workflows_while_a_thread_was_loading_them() -> None:
    assert _free_in_child(lambda: workflows._lock)
