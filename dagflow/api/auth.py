"""Bearer tokens on every route but ``/health`` and the OpenAPI document, and tenancy rules.

``Authorization: Bearer TOKEN`` names an API token (``dagflow tokens create``); a missing,
malformed, unknown or revoked one is a 401. A tenant token sees and acts on its tenant's
runs, jobs, schedules and DAGs only: anything of another tenant is answered exactly as if it
did not exist (404), so a token learns nothing about other tenants. An admin token sees
everything.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dagflow.api.context import ApiContext
from dagflow.errors import ApiError, AuthError
from dagflow.stores.tokens import ApiToken

#: The scheme the OpenAPI document announces; ``auto_error=False``: the 401 is ours.
bearer = HTTPBearer(auto_error=False, description="an API token from `dagflow tokens create`")


def context(request: Request) -> ApiContext:
    """The application's :class:`ApiContext`."""
    ctx: ApiContext = request.app.state.dagflow
    return ctx


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    """The token the request was made with.

    Raises:
        AuthError: No bearer token, or one that is unknown or revoked.
    """
    if credentials is None or not credentials.credentials:
        raise AuthError("send an API token: Authorization: Bearer TOKEN")
    found = context(request).tokens.authenticate(credentials.credentials)
    if found is None:
        raise AuthError("unknown or revoked API token")
    return found


Caller = Annotated[ApiToken, Depends(caller)]
Context = Annotated[ApiContext, Depends(context)]


def tenant_filter(who: ApiToken, tenant: str | None) -> str | None:
    """The tenant a listing is filtered to: the token's own for a tenant token.

    Raises:
        ApiError: A tenant token asked for another tenant's listing (403, field ``tenant``).
    """
    if who.admin:
        return tenant
    if tenant is not None and tenant != who.tenant:
        raise ApiError(
            "a tenant token lists its own tenant only", status=403, code="forbidden", field="tenant"
        )
    return who.tenant
