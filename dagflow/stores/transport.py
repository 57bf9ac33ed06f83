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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import redis
from kombu.exceptions import KombuError, OperationalError
from kombu.utils.url import maybe_sanitize_url

from dagflow.errors import StoreUnavailable, UnreachableError

#: Errors that mean "the server is not there" (never a bug of the caller or of dagflow).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    ConnectionError,
)

#: Any failure of Redis or the broker, an error reply included: what a caller that must not
#: fail on the backend (a run that already ended, a command's last line) catches.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    UnreachableError,
    redis.exceptions.RedisError,
    KombuError,
    OSError,
)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Backoff:
    """Doubling pauses between tries of an unreachable store: ``first_s``, twice that, ...
    up to ``max_s`` (the one backoff every store retry uses).

    Args:
        first_s: The first pause, in seconds (again after :meth:`reset`).
        max_s: The largest pause, in seconds.
    """

    first_s: float = 0.1
    max_s: float = 2.0
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = self.first_s

    @property
    def first(self) -> bool:
        """True until a pause was taken since the start or the last :meth:`reset`."""
        return self._next == self.first_s

    def pause(self) -> float:
        """The next pause, in seconds (each call doubles the one after, up to ``max_s``)."""
        pause, self._next = self._next, min(self._next * 2, self.max_s)
        return pause

    def reset(self) -> None:
        """Start again from ``first_s`` (the store answered)."""
        self._next = self.first_s


def retry_unreachable(
    call: Callable[[], R],
    timeout_s: float,
    backoff: Backoff | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> R:
    """``call()``, tried again with :class:`Backoff` while the store is unreachable.

    Raises:
        The store's error once the next pause would end after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    backoff = backoff or Backoff()
    while True:
        try:
            return call()
        except StoreUnavailable as exc:
            pause = backoff.pause()
            if time.monotonic() + pause > deadline:
                raise
            if on_retry is not None:
                on_retry(exc)
            time.sleep(pause)


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
