"""One contract for both event-claim stores: Redis (the session's private server) and the twin."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dagflow.stores.event_claims import EventClaims, MemoryEventClaims, RedisEventClaims

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
def claims(request: pytest.FixtureRequest) -> Iterator[EventClaims]:
    if request.param == "memory":
        yield MemoryEventClaims()
        return
    store = RedisEventClaims.from_url(request.getfixturevalue("scratch_redis"))
    yield store
    store.close()


def test_the_first_claim_wins_and_others_learn_its_token(claims: EventClaims) -> None:
    assert claims.claim("orders.loaded", "42", "nightly", "r1", 60) == "r1"
    assert claims.claim("orders.loaded", "42", "nightly", "r2", 60) == "r1"


def test_event_id_and_dag_are_part_of_the_key(claims: EventClaims) -> None:
    claims.claim("orders.loaded", "42", "nightly", "r1", 60)
    assert claims.claim("orders.loaded", "43", "nightly", "r2", 60) == "r2"
    assert claims.claim("orders.loaded", "42", "weekly", "r3", 60) == "r3"
    assert claims.claim("orders.shipped", "42", "nightly", "r4", 60) == "r4"
    # ids and names with separators do not collide: they are hashed as a JSON triple
    assert claims.claim("a", "x:y", "z", "r5", 60) == "r5"
    assert claims.claim("a", "x", "y:z", "r6", 60) == "r6"


def test_release_frees_only_the_holders_claim(claims: EventClaims) -> None:
    claims.claim("e", "1", "d", "r1", 60)
    claims.release("e", "1", "d", "other")  # not the holder: nothing happens
    assert claims.claim("e", "1", "d", "r2", 60) == "r1"
    claims.release("e", "1", "d", "r1")
    assert claims.claim("e", "1", "d", "r3", 60) == "r3"


def test_concurrent_claims_agree_on_one_winner(claims: EventClaims) -> None:
    holders: list[str] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        holder = claims.claim("e", "same", "d", f"r{n}", 60)
        with lock:
            holders.append(holder)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(holders) == 20 and len(set(holders)) == 1


def test_a_claim_expires_after_its_ttl() -> None:
    now = [0.0]
    claims = MemoryEventClaims(clock=lambda: now[0])
    claims.claim("e", "1", "d", "r1", 60)
    now[0] = 61.0
    assert claims.claim("e", "1", "d", "r2", 60) == "r2"
