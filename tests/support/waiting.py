"""Wait for an observable condition, with a deadline (never a bare sleep, never forever)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def wait_for(check: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` every 20 ms until it returns something true.

    Raises:
        AssertionError: It did not within ``timeout`` seconds (the message names ``what``).
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(0.02)


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Wait until ``path`` exists."""
    wait_for(path.exists, timeout, f"{path} exists")
