"""``dagflow api``: serve the HTTP API (the app itself is :mod:`dagflow.api`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from dagflow.cli.common import EXIT_OK, verbose_option

EPILOG = """\b
Examples:
  dagflow tokens create --tenant acme      # a token for acme's runs (printed once)
  dagflow api                              # http://127.0.0.1:8060/api/v1
  dagflow api --host 0.0.0.0 --port 9000   # every interface: put TLS in front
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8060/api/v1/runs
"""


@click.command(short_help="serve the HTTP API on 127.0.0.1:8060", epilog=EPILOG)
@click.option("--host", help="address to bind (DAGFLOW_API_HOST, 127.0.0.1)")
@click.option("--port", type=click.IntRange(1, 65535), help="port (DAGFLOW_API_PORT, 8060)")
@click.option("--access-log", is_flag=True, help="log one line per request")
@verbose_option()
def api(host: str | None, port: int | None, access_log: bool) -> int:
    """Serve the HTTP API: JSON under /api/v1, its OpenAPI document at /api/v1/openapi.json.

    Runs, tokens and idempotency keys live in Redis (DAGFLOW_BROKER_URL); DAGs are found by
    name in DAGFLOW_DAGS_DIR (dags/). Every route but /api/v1/health needs a bearer token
    from `dagflow tokens create`.
    """
    from dagflow.api.app import create_app, serve
    from dagflow.settings import Settings

    settings = Settings.from_env()
    overrides: dict[str, Any] = {"api_host": host, "api_port": port}
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    app = create_app(settings)
    print(
        f"dagflow api on http://{settings.api_host}:{settings.api_port}/api/v1 "
        f"(DAGs: {settings.dags_dir})",
        flush=True,
    )
    serve(app, settings.api_host, settings.api_port, access_log=access_log)
    return EXIT_OK


COMMANDS = (api,)
