"""Payload passing (namespaced keys) and retry delays."""

from __future__ import annotations

import pytest

from dagflow.dag.payload import merge_params, namespaced
from dagflow.execution.backoff import RetryPolicy


def test_seed_example() -> None:
    merged = merge_params(
        {"start_date": "2025-10-01"}, {"sweep": {"summary": "Prioritized 15 items"}}
    )
    assert merged == {"start_date": "2025-10-01", "sweep__summary": "Prioritized 15 items"}


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"a": 1, "b": [2]}, {"t__a": 1, "t__b": [2]}),
        (42, {"t__result": 42}),
        ("text", {"t__result": "text"}),
        (None, {"t__result": None}),
        ([1, 2], {"t__result": [1, 2]}),
        ({}, {}),
    ],
)
def test_namespacing(output: object, expected: dict[str, object]) -> None:
    assert namespaced("t", output) == expected


def test_own_params_are_never_overwritten() -> None:
    assert merge_params({"up__x": "mine"}, {"up": {"x": "theirs"}}) == {"up__x": "mine"}


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 1.0),
        (2, 0.0, 2.0),
        (3, 0.0, 4.0),
        (3, 1.0, 4.4),
        (20, 0.0, 300.0),
        (20, 1.0, 300.0),
    ],
)
def test_backoff_doubles_with_jitter_and_a_cap(attempt: int, rand: float, expected: float) -> None:
    assert RetryPolicy(base_s=1.0, max_s=300.0, jitter=0.1).delay(attempt, rand) == expected


def test_random_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(base_s=2.0, max_s=100.0, jitter=0.5)
    delays = {policy.delay(2) for _ in range(50)}
    assert all(4.0 <= d <= 6.0 for d in delays) and len(delays) > 1
