"""Transport errors at the Python API's edge: a caller catches one dagflow error, not redis's
or kombu's.

The Python API (``Runner``, ``RunHandle``, ``get_run``, ``list_runs``) talks to Redis and
the broker. When either cannot be reached, it raises
:class:`~dagflow.errors.UnreachableError`, which names the URL (password hidden) and the
cause, and is a :class:`~dagflow.errors.DagflowError` like every error dagflow raises on
purpose. Waiting (``RunHandle.wait``) still rides out an outage until its timeout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import redis
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from dagflow.errors import UnreachableError

#: Errors that mean "the server is not there" (never a bug of the caller or of dagflow).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    ConnectionError,
)

P = ParamSpec("P")
R = TypeVar("R")


def safe_url(url: str | None) -> str:
    """``url`` with its password masked (``redis://:**@host:6379/0``)."""
    return str(maybe_sanitize_url(url)) if url else "(no URL)"


@contextmanager
def sealed(url: str | None) -> Iterator[None]:
    """Turn a transport error inside the block into :class:`UnreachableError` for ``url``."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise UnreachableError(safe_url(url), exc) from exc


def sealing(url_of: Callable[..., str | None]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a method so that transport errors leave it as :class:`UnreachableError`;
    ``url_of(self)`` names the URL it was talking to."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except TRANSPORT_ERRORS as exc:
                raise UnreachableError(safe_url(url_of(args[0])), exc) from exc

        return wrapper

    return decorate
