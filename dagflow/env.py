"""Reading environment values for :class:`dagflow.settings.Settings`: numbers, lists and the
checks each setting's value must pass, each failing with a one-line :class:`ConfigError`
that names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from dagflow.errors import ConfigError


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def tenant_limits(raw: str) -> tuple[tuple[str, int], ...]:
    """Parse ``acme=4,beta=16`` (``DAGFLOW_TENANT_LIMITS``)."""
    out: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        tenant, sep, value = item.partition("=")
        if not sep or not tenant.strip() or not value.strip().isdigit():
            raise ConfigError(
                f"DAGFLOW_TENANT_LIMITS: {item!r} is not tenant=N (e.g. acme=4,beta=16)"
            )
        out.append((tenant.strip(), int(value)))
    return tuple(out)


#: Runs of one tenant that run at once when ``DAGFLOW_TENANT_MAX_ACTIVE_RUNS`` is not set:
#: fair by default. Without a cap, a tenant's burst of runs puts all their first steps in
#: the broker queue, and another tenant's run waits behind every one of them (18.5 s behind
#: 1,000 runs in bench/README.md); with it, behind at most this many runs' steps. One
#: tenant alone still fills about this many worker processes with chains (raise it for
#: bigger clusters; 0 turns the cap off).
DEFAULT_TENANT_MAX_ACTIVE_RUNS = 64

#: Pool names (``pool:`` in a DAG file, ``DAGFLOW_POOLS``): they are Redis key parts.
POOL_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
POOL_RULE = "1-64 letters, digits, '_', '-' or '.', not starting with '-' or '.'"


def pools(raw: str) -> tuple[tuple[str, int], ...]:
    """Parse ``warehouse=4,api=2`` (``DAGFLOW_POOLS``): each pool's size, at least 1."""
    out: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not POOL_PATTERN.match(name) or not value.isdigit() or int(value) < 1:
            raise ConfigError(
                f"DAGFLOW_POOLS: {item!r} is not pool=N with N >= 1 and a pool name of "
                f"{POOL_RULE} (e.g. warehouse=4,api=2)"
            )
        out[name] = int(value)
    return tuple(out.items())


def buckets(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """Parse ``1,5,60,3600`` (seconds, ascending, positive) of a ``DAGFLOW_METRICS_*_BUCKETS``."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        bounds = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a list of seconds (e.g. 1,60,3600)") from None
    if not bounds or any(b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ConfigError(f"{name}={raw!r} must list positive seconds in increasing order")
    return bounds


#: Histogram bounds in seconds when DAGFLOW_METRICS_*_BUCKETS are not set (the run's reach a
#: day; see dagflow.metrics.catalog, which keeps the same values).
RUN_BUCKETS_S: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip
TASK_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
WAIT_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)  # fmt: skip


def output_store(raw: str | None) -> str | None:
    """Check ``DAGFLOW_OUTPUT_STORE``: an fsspec URL (``scheme://...``), or an absolute path
    (taken as ``file://``)."""
    if raw is None:
        return None
    raw = raw.strip().rstrip("/")
    if raw.startswith("/"):
        return Path(raw).as_uri()
    scheme, sep, rest = raw.partition("://")
    if not sep or not scheme or not rest:
        raise ConfigError(
            f"DAGFLOW_OUTPUT_STORE={raw!r} is not a URL (file:///srv/dagflow/outputs, "
            "s3://bucket/prefix, or any fsspec URL)"
        )
    return raw


def secrets(raw: str) -> str:
    """Check ``DAGFLOW_SECRETS``: ``env`` or ``file:///a/folder``."""
    raw = raw.strip()
    if raw == "env" or (raw.startswith("file:///") and len(raw) > len("file:///")):
        return raw
    raise ConfigError(f"DAGFLOW_SECRETS={raw!r} must be 'env' or a folder as file:///run/secrets")
