"""Optional HTTP basic auth for the dashboard, from ``DAGFLOW_DASHBOARD_AUTH=user:password``.

A Flask ``before_request`` hook is all it takes, so there is no extra dependency; put the
dashboard behind TLS (a reverse proxy) whenever it leaves localhost, as basic auth sends the
password with every request.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from dagflow.errors import ConfigError


def parse_credentials(value: str) -> tuple[str, str]:
    """Split ``user:password`` (the password may contain colons).

    Raises:
        ConfigError: There is no colon or the user is empty.
    """
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise ConfigError("DAGFLOW_DASHBOARD_AUTH must be 'user:password'")
    return user, password


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def install_basic_auth(server: Flask, credentials: str | None, realm: str = "dagflow") -> None:
    """Require ``credentials`` (``user:password``) on every request to ``server``; None: no auth.

    Raises:
        ConfigError: ``credentials`` is not ``user:password``.
    """
    if not credentials:
        return
    user, password = parse_credentials(credentials)

    def check() -> Response | None:
        auth = request.authorization
        # Both comparisons always run, in constant time, so timing tells nothing.
        ok_user = _same(auth.username if auth else None, user)
        ok_password = _same(auth.password if auth else None, password)
        if auth is not None and ok_user and ok_password:
            return None
        return Response(
            "Authentication required\n", 401, {"WWW-Authenticate": f'Basic realm="{realm}"'}
        )

    server.before_request(check)
