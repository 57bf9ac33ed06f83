"""The traceback kept for a failed attempt: the workflow's frames only, bounded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dagflow.errors import WorkflowOutputError
from dagflow.execution.outputs import encode_output
from dagflow.execution.timeouts import call_with_timeout
from dagflow.execution.tracebacks import user_traceback


def _raised(func: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:
        func()
    return info.value


def _user_code(depth: int) -> None:
    if depth:
        _user_code(depth - 1)
    raise ValueError("boom")


@pytest.mark.parametrize("timeout_s", [None, 5.0], ids=["direct", "timeout-thread"])
def test_keeps_the_workflows_frames_and_drops_dagflows(timeout_s: float | None) -> None:
    exc = _raised(lambda: call_with_timeout(lambda: _user_code(0), timeout_s, "Task 'a'"))
    text = user_traceback(exc)
    assert text is not None
    assert text.startswith("Traceback (most recent call last):\n")
    assert f'File "{__file__}"' in text and "in _user_code" in text
    assert "dagflow/execution/timeouts.py" not in text
    assert text.endswith("ValueError: boom")


def test_an_error_dagflow_raised_itself_has_no_traceback() -> None:
    try:
        encode_output("a", {1, 2})
    except WorkflowOutputError as caught:
        exc = caught
    assert exc.__traceback__ is not None
    # As the step sees it: caught in dagflow's own frame, not in this test's
    exc = exc.with_traceback(exc.__traceback__.tb_next)
    assert user_traceback(exc) is None


def test_frames_and_size_are_bounded() -> None:
    exc = _raised(lambda: _user_code(50))
    text = user_traceback(exc, max_frames=20)
    assert text is not None
    # 53 frames (this test's two and 51 recursive ones): the 20 innermost are kept
    assert "  ... 33 outer frames not shown\n" in text
    short = user_traceback(exc, max_chars=500)
    assert short is not None and len(short) <= 500
    assert short.startswith("... (trimmed)\n") and short.endswith("ValueError: boom")
