"""Build the HTTP API (FastAPI) and serve it with uvicorn (``dagflow api``).

Every route lives under ``/api/v1``; the OpenAPI document is ``/api/v1/openapi.json`` (no
interactive docs page: it would load scripts from a CDN). The app binds 127.0.0.1 unless
told otherwise; put it behind a TLS reverse proxy before it leaves the machine, as bearer
tokens travel with every request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from dagflow.api import routes, runs, starts
from dagflow.api.context import ApiContext
from dagflow.api.errors import MAX_BODY_BYTES, GuardMiddleware, install_error_handlers
from dagflow.settings import Settings

#: Where every route lives.
PREFIX = "/api/v1"
#: The API's version, in the OpenAPI document.
API_VERSION = "1"

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    ctx: ApiContext | None = None,
    max_body: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API for ``settings`` (default: :meth:`Settings.from_env`).

    Args:
        settings: Where runs, tokens and DAGs are.
        ctx: The parts to use instead of building them from ``settings`` (tests).
        max_body: Largest request body, in bytes (a larger one is a 413).

    Raises:
        ConfigError: No broker or Redis is configured.
    """
    settings = settings or Settings.from_env()
    parts = ctx or ApiContext.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        parts.close()

    app = FastAPI(
        title="dagflow",
        version=API_VERSION,
        description="Start DAG runs by name, follow and control them (issue 21).",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.dagflow = parts
    api = APIRouter(prefix=PREFIX)
    api.include_router(runs.router)
    api.include_router(routes.router)
    api.include_router(starts.router)
    app.include_router(api)
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body=max_body)
    return app


def serve(app: FastAPI, host: str, port: int, *, access_log: bool = False) -> None:
    """Serve ``app`` on ``host:port`` with uvicorn until interrupted (SIGINT or SIGTERM)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
