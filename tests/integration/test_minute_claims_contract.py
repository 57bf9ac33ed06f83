"""One contract for both claim stores: Redis (the session's private server) and the in-memory twin."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dagflow.stores.minute_claims import MemoryMinuteClaims, MinuteClaims, RedisMinuteClaims

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
def claims(request: pytest.FixtureRequest) -> Iterator[MinuteClaims]:
    if request.param == "memory":
        yield MemoryMinuteClaims()
        return
    yield RedisMinuteClaims.from_url(request.getfixturevalue("scratch_redis"))


def test_first_claim_wins(claims: MinuteClaims) -> None:
    assert claims.claim_many([("a", "2026-11-26T10:05:00Z", "r1")]) == [True]
    assert claims.claim_many([("a", "2026-11-26T10:05:00Z", "r2")]) == [False]
    assert claims.owner("a", "2026-11-26T10:05:00Z") == "r1"
    assert claims.owner("a", "2026-11-26T10:06:00Z") is None


def test_batch_mixes_wins_and_losses(claims: MinuteClaims) -> None:
    claims.claim_many([("a", "2026-11-26T10:05:00Z", "x")])
    got = claims.claim_many(
        [("a", "2026-11-26T10:05:00Z", "y"), ("b", "2026-11-26T10:05:00Z", "y")]
    )
    assert got == [False, True]


def test_last_claimed_only_moves_forward(claims: MinuteClaims) -> None:
    claims.claim_many([("a", "2026-11-26T10:05:00Z", "x")])
    claims.claim_many([("a", "2026-11-26T09:55:00Z", "x")])  # a late catch-up
    assert claims.last_claimed(["a", "never"]) == {"a": "2026-11-26T10:05:00Z"}


def test_racing_threads_claim_once(claims: MinuteClaims) -> None:
    # Given 8 threads racing for the same 50 minutes
    minutes = [f"2026-11-26T10:{m:02d}:00Z" for m in range(50)]
    wins: list[int] = []
    lock = threading.Lock()

    def race() -> None:
        won = sum(claims.claim_many([("a", m, "t") for m in minutes]))
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every minute was won exactly once in total
    assert sum(wins) == 50


def test_memory_claims_expire() -> None:
    now = [0.0]
    claims = MemoryMinuteClaims(ttl_s=10, clock=lambda: now[0])
    claims.claim_many([("a", "m", "x")])
    now[0] = 11.0
    assert claims.owner("a", "m") is None
    assert claims.claim_many([("a", "m", "y")]) == [True]
