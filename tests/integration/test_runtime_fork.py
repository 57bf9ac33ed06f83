"""A prefork pool process never inherits a runtime lock held by a thread of its parent."""

from __future__ import annotations

import os

import pytest

from dagflow import runtime
from dagflow.runtime import Runtime
from dagflow.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_a_forked_child_gets_fresh_runtime_locks() -> None:
    # Given the worker's main process with its locks held by a thread (the sweeper building
    # the runtime, reading a plan) at the moment the pool forks
    rt = Runtime.from_settings(Settings())
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
