"""The API's one error shape, and the guards that keep every failure in it.

Every refusal is ``{"error": {"code": ..., "message": ..., "field": ...}}`` (``field``: the
request field at fault, or null), with ``details`` listing every problem when there are
several. Nothing leaves the server as a traceback: an unexpected exception is logged with an
id and answered with a JSON 500 that carries only that id. A request body larger than
:data:`MAX_BODY_BYTES` is refused with 413 before it is parsed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagflow.errors import ApiError, ConfigError, DagflowError, SpecError, UnreachableError
from dagflow.stores.transport import BACKEND_ERRORS

logger = logging.getLogger(__name__)

#: Largest request body accepted, in bytes (1 MB); a larger one is a 413.
MAX_BODY_BYTES = 1_000_000
#: How much of a refused body the API still reads (times the limit) so the client gets its 413.
DRAIN_FACTOR = 16
#: Codes of the HTTP errors the framework itself raises (unknown path, wrong method...).
HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_body(
    code: str,
    message: str,
    field: str | None = None,
    details: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON of an error response."""
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    if len(details) > 1:
        error["details"] = list(details)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in the API's shape."""
    return JSONResponse(error_body(code, message, field, details), status, headers=headers)


def _field_of(loc: Sequence[Any]) -> str | None:
    """``params.day`` for ``("body", "params", "day")``; None for the body as a whole."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body_error = any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
    if body_error and media != "application/json" and not media.endswith("+json"):
        return error_response(
            415,
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
        )
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    details = []
    for error in errors:
        field = _field_of(error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "missing" and field is None:
            message = "a JSON body is required"
        elif error.get("type") == "extra_forbidden":
            message = "unknown field"
        details.append({"field": field, "message": message})
    first: dict[str, Any] = details[0] if details else {"field": None, "message": "invalid"}
    return error_response(422, "invalid_request", str(first["message"]), first["field"], details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def _spec_details(exc: SpecError) -> list[dict[str, Any]]:
    return [{"field": e.field, "message": e.message} for e in exc.errors]


async def _dagflow_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=headers)
    if isinstance(exc, SpecError):
        first = exc.errors[0]
        return error_response(422, "invalid_params", first.message, first.field, _spec_details(exc))
    if isinstance(exc, UnreachableError | ConfigError):
        return _unavailable(exc)
    assert isinstance(exc, DagflowError)
    return error_response(409, "conflict", str(exc))


def _unavailable(exc: BaseException) -> JSONResponse:
    # The URL and the transport's words stay in the server's log.
    logger.warning("dagflow api: the run store cannot be used: %s", exc)
    return error_response(503, "unavailable", "the run store cannot be reached; try again later")


async def _backend_error(request: Request, exc: Exception) -> JSONResponse:
    return _unavailable(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation, HTTP, dagflow and transport errors in the API's shape."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DagflowError, _dagflow_error)
    for error in BACKEND_ERRORS:
        if issubclass(error, Exception):
            app.add_exception_handler(error, _backend_error)


class GuardMiddleware:
    """The outermost guard (pure ASGI): bodies over ``max_body`` are a 413, and any exception
    that escapes the app is logged and answered with a JSON 500 without its traceback.

    Args:
        app: The application.
        max_body: Largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await self._drain(receive)
                await self._send_json(send, 413, error_body(
                    "body_too_large", f"the request body is over {self.max_body} bytes"
                ))  # fmt: skip
                return
            await self.app(scope, _replay(body, receive), tracked_send)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            logger.exception("dagflow api: internal error %s on %s", incident, scope.get("path"))
            if not started:
                message = f"internal error (id {incident}, in the API server's log)"
                await self._send_json(send, 500, error_body("internal", message))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over the limit (by its length or as read)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return None
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return b""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of a refused body, up to ``DRAIN_FACTOR`` times the limit.

        A server that answers 413 and closes while the client still sends makes most clients
        fail on a broken pipe before they read the answer; past the cap, the client gets that
        rather than the server reading without end.
        """
        left = self.max_body * DRAIN_FACTOR
        while left > 0:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read already, then waits as the server's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
