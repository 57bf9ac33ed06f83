"""``dagflow tokens create|list|revoke``: the HTTP API's bearer tokens (kept in Redis).

A token is printed once, by ``create``; only its hash is stored. Without Redis
(``DAGFLOW_BROKER_URL`` or ``DAGFLOW_RESULT_BACKEND``) every command is one line and exit 3.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click

from dagflow.cli.common import EXIT_OK, verbose_option


@click.group(short_help="create, list and revoke the HTTP API's tokens")
def tokens() -> None:
    """The HTTP API's bearer tokens: one tenant's, or admin."""


@tokens.command(
    short_help="make a token (printed once) for a tenant, or an admin token",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow tokens create --tenant acme   # acme's runs, jobs, schedules and DAGs\n"
        "  dagflow tokens create --admin         # everything"
    ),
)
@click.option("--tenant", help="the tenant the token acts for")
@click.option("--admin", is_flag=True, help="a token that sees and acts on every tenant")
@verbose_option()
def create(tenant: str | None, admin: bool) -> int:
    """Make a new API token and print it: it is shown this once (only its hash is kept)."""
    from dagflow.settings import Settings
    from dagflow.wiring import token_store

    if admin == bool(tenant):
        raise click.UsageError("give either --tenant TENANT or --admin")
    store = token_store(Settings.from_env())
    try:
        record, token = store.create(tenant=tenant, admin=admin, now=time.time())
    finally:
        store.close()
    scope = "admin" if admin else f"tenant {tenant}"
    click.echo(f"token {record.id} ({scope}); shown once, keep it secret:", err=True)
    click.echo(token)
    return EXIT_OK


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@tokens.command(
    "list",
    short_help="every token: id, tenant, created, revoked (never the secret)",
    epilog="\b\nExamples:\n  dagflow tokens list\n  dagflow tokens list --json",
)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@verbose_option()
def list_tokens(as_json: bool) -> int:
    """List every token, revoked ones included, oldest first."""
    from dagflow.settings import Settings
    from dagflow.wiring import token_store

    store = token_store(Settings.from_env())
    try:
        found = store.tokens()
    finally:
        store.close()
    if as_json:
        print(json.dumps([t.to_dict() for t in found], indent=2))
        return EXIT_OK
    if not found:
        print("no tokens")
        return EXIT_OK
    print(f"{'ID':<12}  {'SCOPE':<24}  {'CREATED':<20}  REVOKED")
    for t in found:
        scope = "admin" if t.admin else f"tenant {t.tenant}"
        print(f"{t.id:<12}  {scope:<24}  {_time(t.created_at):<20}  {_time(t.revoked_at)}")
    return EXIT_OK


@tokens.command(
    short_help="revoke a token: it is refused (401) from now on",
    epilog="\b\nExample:\n  dagflow tokens revoke 3f9c0a1b2c4d",
)
@click.argument("token_id")
@verbose_option()
def revoke(token_id: str) -> int:
    """Revoke TOKEN_ID (from `dagflow tokens list`); exit 3 if there is no such token."""
    from dagflow.errors import ApiError
    from dagflow.settings import Settings
    from dagflow.wiring import token_store

    store = token_store(Settings.from_env())
    try:
        record = store.revoke(token_id, time.time())
    finally:
        store.close()
    if record is None:
        raise ApiError(f"no token {token_id!r}", status=404, code="unknown_token")
    print(f"token {token_id} revoked at {_time(record.revoked_at)}")
    return EXIT_OK


COMMANDS = (tokens,)
