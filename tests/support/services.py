"""One policy for a service the suite cannot find (dramatiq's ``check_redis``).

Under CI (``CI=true``) a missing service is a failure: CI installs everything, so a missing
binary means a broken image, not a test to leave out. On a developer's machine the test is
skipped with the reason, which ``-ra`` prints at the end of the run.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True when running under CI (``CI=true``)."""
    return os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Fail under CI, skip otherwise, with ``reason``, unless ``condition`` holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_executable(name: str, why: str) -> str:
    """The path of ``name`` on PATH; fails under CI or skips when it is not installed."""
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed ({why})")
    assert path is not None
    return path
