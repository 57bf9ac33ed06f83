"""The one backoff every store retry uses, and the retry loop around it (no server needed:
the errors are raised by the test's own call, as a sealed client raises them)."""

from __future__ import annotations

import pytest
import redis

from dagflow.errors import StoreUnavailable
from dagflow.stores.transport import Backoff, retry_unreachable


def _lost(cause: BaseException) -> StoreUnavailable:
    return StoreUnavailable("redis://127.0.0.1:1/0", cause)


def test_pauses_double_up_to_the_largest_and_start_again_after_a_reset() -> None:
    backoff = Backoff(0.1, 0.5)
    assert backoff.first
    assert [backoff.pause() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert not backoff.first
    backoff.reset()
    assert backoff.first and backoff.pause() == 0.1


def test_a_call_that_recovers_is_retried_until_it_answers() -> None:
    failures = [_lost(redis.ConnectionError("down")), _lost(redis.TimeoutError("slow"))]
    seen: list[str] = []

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "answer"

    result = retry_unreachable(call, 5.0, Backoff(0.001, 0.002), lambda e: seen.append(str(e)))
    assert (result, [s.rsplit(": ", 1)[1] for s in seen]) == ("answer", ["down", "slow"])


def test_the_stores_error_is_raised_once_the_next_pause_would_pass_the_timeout() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise _lost(redis.ConnectionError("down"))

    with pytest.raises(StoreUnavailable):
        retry_unreachable(call, 0.05, Backoff(0.02, 0.02))
    assert 2 <= calls <= 4


def test_other_errors_are_not_retried() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise redis.exceptions.ResponseError("WRONGTYPE")

    with pytest.raises(redis.exceptions.ResponseError):
        retry_unreachable(call, 5.0)
    assert calls == 1
