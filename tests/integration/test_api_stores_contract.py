"""The HTTP API's stores, each held to one contract in memory and in Redis: tokens (hash only,
revocation) and idempotency keys (one winner, expiry, compare-and-delete release)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from dagflow.keys import token_key
from dagflow.stores.idempotency import (
    IdempotencyKeys,
    MemoryIdempotencyKeys,
    RedisIdempotencyKeys,
)
from dagflow.stores.tokens import MemoryTokenStore, RedisTokenStore, TokenStore, token_hash

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
def tokens(request: pytest.FixtureRequest) -> Iterator[TokenStore]:
    if request.param == "memory":
        yield MemoryTokenStore()
        return
    client = redis.Redis.from_url(request.getfixturevalue("scratch_redis"), decode_responses=True)
    yield RedisTokenStore(client)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def keys(request: pytest.FixtureRequest) -> Iterator[IdempotencyKeys]:
    if request.param == "memory":
        yield MemoryIdempotencyKeys()
        return
    client = redis.Redis.from_url(request.getfixturevalue("scratch_redis"), decode_responses=True)
    yield RedisIdempotencyKeys(client)
    client.close()


def test_a_token_authenticates_until_it_is_revoked(tokens: TokenStore) -> None:
    record, token = tokens.create(tenant="acme", admin=False, now=100.0)
    assert token.startswith(f"dfk_{record.id}_") and len(token) > 50
    assert tokens.authenticate(token) == record
    assert tokens.in_use()
    # A token with the right id and another secret, or a mangled one, is refused
    assert tokens.authenticate(token[:-2] + "zz") is None
    assert tokens.authenticate("dfk_" + record.id) is None
    assert tokens.authenticate("") is None
    revoked = tokens.revoke(record.id, now=200.0)
    assert revoked is not None and revoked.revoked_at == 200.0
    assert tokens.revoke(record.id, now=300.0).revoked_at == 200.0  # type: ignore[union-attr]
    assert tokens.authenticate(token) is None
    assert not tokens.in_use()
    assert tokens.revoke("000000000000", now=1.0) is None
    assert [t.id for t in tokens.tokens()] == [record.id]


def test_tenant_and_admin_tokens_see_what_they_should(tokens: TokenStore) -> None:
    tenant, _ = tokens.create(tenant="acme", admin=False, now=1.0)
    admin, _ = tokens.create(tenant=None, admin=True, now=2.0)
    assert tenant.may_see("acme") and not tenant.may_see("beta") and not tenant.may_see(None)
    assert admin.may_see("acme") and admin.may_see("beta")
    assert [t.id for t in tokens.tokens()] == [tenant.id, admin.id]
    with pytest.raises(ValueError):
        tokens.create(tenant="acme", admin=True, now=3.0)
    with pytest.raises(ValueError):
        tokens.create(tenant=None, admin=False, now=3.0)


def test_redis_keeps_only_the_hash(scratch_redis: str) -> None:
    client = redis.Redis.from_url(scratch_redis, decode_responses=True)
    record, token = RedisTokenStore(client).create(tenant="acme", admin=False, now=1.0)
    stored = client.hgetall(token_key(record.id))
    assert stored["hash"] == token_hash(token)
    assert token not in str(stored) and token.split("_")[2] not in str(stored)
    client.close()


def test_one_of_many_concurrent_claims_wins(keys: IdempotencyKeys) -> None:
    results = []
    barrier = threading.Barrier(20)

    def claim(n: int) -> None:
        barrier.wait()
        results.append(keys.claim("acme", "k", f"run-{n}", "fp", 60))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [c for c in results if c.won]
    assert len(winners) == 1
    assert {c.run_id for c in results} == {winners[0].run_id}
    assert {c.fingerprint for c in results} == {"fp"}
    # Keys are per tenant
    assert keys.claim("beta", "k", "run-b", "fp", 60).won


def test_a_released_claim_can_be_won_again_and_a_claim_expires(keys: IdempotencyKeys) -> None:
    assert keys.claim("acme", "k", "run-1", "fp", 60).won
    keys.release("acme", "k", "run-2", "fp")  # not the holder: nothing happens
    assert not keys.claim("acme", "k", "run-3", "fp", 60).won
    keys.release("acme", "k", "run-1", "fp")
    assert keys.claim("acme", "k", "run-4", "fp", 1).won
    if isinstance(keys, MemoryIdempotencyKeys):
        keys.clock = lambda: time.monotonic() + 2  # the twin's clock, moved past the ttl
    else:
        time.sleep(1.2)
    assert keys.claim("acme", "k", "run-5", "fp", 60).won
