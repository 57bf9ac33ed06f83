"""API tokens: the bearer tokens of the HTTP API, stored as hashes only.

A token is ``dfk_<id>_<secret>``: the id (12 hex digits) says which record to read, so a
request costs one lookup and no scan; the record holds the SHA-256 of the whole token,
never the token itself, and :meth:`TokenStore.authenticate` compares the two hashes with
:func:`hmac.compare_digest` (constant time). ``dagflow tokens create`` prints a token once;
it cannot be shown again. A revoked token keeps its record (``dagflow tokens list`` shows
when it was revoked) and never authenticates again.

A token belongs to one tenant (it sees and acts on that tenant's runs, jobs, schedules and
DAGs) or is an admin token (everything). :class:`RedisTokenStore` keeps them in Redis,
next to the runs, so every ``dagflow api`` process and the dashboard share them;
:class:`MemoryTokenStore` is its in-process twin, held to the same contract test.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dagflow.keys import TOKENS, token_key
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client

#: Every token starts with this, so a leaked one is easy to recognise (and to scan for).
TOKEN_PREFIX = "dfk"
#: Hex digits of a token's id.
ID_HEX = 12
#: Random bytes of a token's secret part (256 bits).
SECRET_BYTES = 32


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a whole token: what is stored and compared."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str | None:
    """The id part of ``dfk_<id>_<secret>``, or None when ``token`` is not of that form."""
    prefix, _, rest = token.partition("_")
    token_id, sep, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not sep or not secret or len(token_id) != ID_HEX:
        return None
    if any(c not in "0123456789abcdef" for c in token_id):
        return None
    return token_id


def new_token() -> tuple[str, str]:
    """A fresh ``(token id, token)``."""
    token_id = secrets.token_hex(ID_HEX // 2)
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


@dataclass(frozen=True)
class ApiToken:
    """What is known about a token (never its secret).

    Attributes:
        id: The token's id (the part after ``dfk_``), for ``dagflow tokens revoke``.
        tenant: The tenant it acts for; None for an admin token.
        admin: True for an admin token: every tenant's runs, jobs, schedules and DAGs.
        created_at: Epoch seconds.
        revoked_at: Epoch seconds, or None while it is valid.
    """

    id: str
    tenant: str | None
    admin: bool
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        """True until the token is revoked."""
        return self.revoked_at is None

    def may_see(self, tenant: str | None) -> bool:
        """True when this token may see and act on what belongs to ``tenant``."""
        return self.admin or (tenant is not None and tenant == self.tenant)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``dagflow tokens list --json``)."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "admin": self.admin,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    def to_fields(self, digest: str) -> dict[str, str]:
        """The Redis hash of the token, with the hash of its secret."""
        fields = {
            "hash": digest,
            "tenant": self.tenant or "",
            "admin": "1" if self.admin else "0",
            "created_at": repr(self.created_at),
        }
        if self.revoked_at is not None:
            fields["revoked_at"] = repr(self.revoked_at)
        return fields

    @classmethod
    def from_fields(cls, token_id: str, fields: Mapping[str, str]) -> ApiToken:
        """The token of a Redis hash written by :meth:`to_fields`."""
        revoked = fields.get("revoked_at")
        return cls(
            id=token_id,
            tenant=fields.get("tenant") or None,
            admin=fields.get("admin") == "1",
            created_at=float(fields.get("created_at") or 0.0),
            revoked_at=float(revoked) if revoked else None,
        )


def _check(tenant: str | None, admin: bool) -> None:
    if admin == bool(tenant):
        raise ValueError("a token is either for one tenant or an admin token")


class TokenStore(Protocol):
    """Where API tokens live (see the module docstring)."""

    def create(self, *, tenant: str | None, admin: bool, now: float) -> tuple[ApiToken, str]:
        """Store a new token; return it and the token string (shown once, never stored)."""
        ...

    def authenticate(self, token: str) -> ApiToken | None:
        """The active token whose hash matches ``token``, else None."""
        ...

    def tokens(self) -> list[ApiToken]:
        """Every token, revoked ones included, oldest first."""
        ...

    def revoke(self, token_id: str, now: float) -> ApiToken | None:
        """Revoke a token (a second revoke keeps the first time); None if unknown."""
        ...

    def in_use(self) -> bool:
        """True when at least one token is active (the dashboard then asks for one)."""
        ...


class MemoryTokenStore:
    """A :class:`TokenStore` in this process (tests and tools; tokens die with it)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[ApiToken, str]] = {}
        self._lock = threading.Lock()

    def create(self, *, tenant: str | None, admin: bool, now: float) -> tuple[ApiToken, str]:
        """See :meth:`TokenStore.create`."""
        _check(tenant, admin)
        token_id, token = new_token()
        record = ApiToken(token_id, tenant, admin, now)
        with self._lock:
            self._tokens[token_id] = (record, token_hash(token))
        return record, token

    def authenticate(self, token: str) -> ApiToken | None:
        """See :meth:`TokenStore.authenticate`."""
        token_id = token_id_of(token)
        with self._lock:
            found = self._tokens.get(token_id or "")
        if found is None or not hmac.compare_digest(found[1], token_hash(token)):
            return None
        return found[0] if found[0].active else None

    def tokens(self) -> list[ApiToken]:
        """See :meth:`TokenStore.tokens`."""
        with self._lock:
            return sorted((t for t, _ in self._tokens.values()), key=lambda t: t.created_at)

    def revoke(self, token_id: str, now: float) -> ApiToken | None:
        """See :meth:`TokenStore.revoke`."""
        with self._lock:
            found = self._tokens.get(token_id)
            if found is None:
                return None
            record, digest = found
            if record.revoked_at is None:
                record = ApiToken(record.id, record.tenant, record.admin, record.created_at, now)
                self._tokens[token_id] = (record, digest)
            return record

    def in_use(self) -> bool:
        """See :meth:`TokenStore.in_use`."""
        return any(t.active for t in self.tokens())


class RedisTokenStore:
    """A :class:`TokenStore` in Redis (the run state's), shared by every process.

    Args:
        client: A redis-py client created with ``decode_responses=True``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str, *, master_name: str = DEFAULT_MASTER_NAME) -> RedisTokenStore:
        """Connect to the Redis at ``url`` (``master_name`` for Sentinel)."""
        return cls(redis_client(url, master_name=master_name, decode_responses=True))

    def create(self, *, tenant: str | None, admin: bool, now: float) -> tuple[ApiToken, str]:
        """See :meth:`TokenStore.create`."""
        _check(tenant, admin)
        token_id, token = new_token()
        record = ApiToken(token_id, tenant, admin, now)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(token_key(token_id), mapping=record.to_fields(token_hash(token)))
        pipe.zadd(TOKENS, {token_id: int(now * 1000)})
        pipe.execute()
        return record, token

    def authenticate(self, token: str) -> ApiToken | None:
        """See :meth:`TokenStore.authenticate`: one ``HGETALL``."""
        token_id = token_id_of(token)
        if token_id is None:
            return None
        fields = self.client.hgetall(token_key(token_id))
        if not fields or not hmac.compare_digest(fields.get("hash", ""), token_hash(token)):
            return None
        record = ApiToken.from_fields(token_id, fields)
        return record if record.active else None

    def tokens(self) -> list[ApiToken]:
        """See :meth:`TokenStore.tokens`."""
        ids = [str(i) for i in self.client.zrange(TOKENS, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for token_id in ids:
            pipe.hgetall(token_key(token_id))
        return [
            ApiToken.from_fields(token_id, fields)
            for token_id, fields in zip(ids, pipe.execute(), strict=True)
            if fields
        ]

    def revoke(self, token_id: str, now: float) -> ApiToken | None:
        """See :meth:`TokenStore.revoke`."""
        key = token_key(token_id)
        if not self.client.exists(key):
            return None
        self.client.hsetnx(key, "revoked_at", repr(now))
        return ApiToken.from_fields(token_id, self.client.hgetall(key))

    def in_use(self) -> bool:
        """See :meth:`TokenStore.in_use`."""
        return any(t.active for t in self.tokens())

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
