"""One parser for dagflow's Redis URLs, and the one place a dagflow Redis client is opened.

dagflow's broker, result backend, run store, event stream and every tool that reads them
take a URL in one of two families (arq's ``RedisSettings.from_dsn`` is the model):

* one server: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
  ``unix:///path/to/redis.sock?db=N``, opened as redis-py's ``Redis.from_url`` opens them;
* a primary watched by Redis Sentinel, in the form Celery and kombu take::

      sentinel://[[user]:password@]host[:port][/db];sentinel://host2[:port][/db];...

  Each ``sentinel://`` part names one sentinel (port 26379 by default). The database, user
  and password are the first part's, as kombu and Celery read them (a later part may
  repeat them, not contradict them). They are the primary's: as in kombu and Celery, the
  sentinels themselves are asked without a password.
  The primary's name is not in the URL: it is ``DAGFLOW_REDIS_MASTER_NAME``, which dagflow
  also hands Celery as ``master_name`` in its transport options, so that Celery and
  dagflow's own clients always follow the same primary.

A client of a Sentinel URL is redis-py's ``Sentinel(...).master_for(name)``: each new
connection asks the sentinels where the primary is, and a connection that finds its
server demoted is dropped (redis-py raises ``ConnectionError`` for it), so commands follow a
promotion after the ``ConnectionError`` that every dagflow caller already retries.

Parsing is pure and imports nothing heavy (``Settings.from_env`` checks URLs with it);
only :func:`redis_client` imports redis-py.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from dagflow.errors import ConfigError

if TYPE_CHECKING:
    import redis

#: The scheme of a Sentinel URL (kombu's and Celery's).
SENTINEL_SCHEME = "sentinel"
#: URL schemes dagflow opens as one Redis server (TCP, TLS, unix socket).
SERVER_SCHEMES = ("redis", "rediss", "unix")
#: Port of a sentinel when its part names none (Redis Sentinel's default).
SENTINEL_PORT = 26379
#: The primary's name when ``DAGFLOW_REDIS_MASTER_NAME`` is not set (the name in Redis's
#: sample ``sentinel.conf``).
DEFAULT_MASTER_NAME = "mymaster"
#: What stands for a password in a transport error's URL (kombu's ``maybe_sanitize_url``'s).
URL_MASK = "**"
#: Separator of the sentinels in a Sentinel URL (kombu's and Celery's).
SEPARATOR = ";"


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``sentinel://`` URL: where the sentinels are, and what to open on the primary.

    Attributes:
        sentinels: ``(host, port)`` of each sentinel, in URL order.
        db: Database number on the primary.
        username: ACL user on the primary, if any.
        password: Password on the primary, if any.
    """

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


def scheme(url: str | None) -> str:
    """The lower-case scheme of ``url`` (``""`` when it has none)."""
    head, sep, _ = (url or "").partition("://")
    return head.lower() if sep else ""


def is_sentinel_url(url: str | None) -> bool:
    """True when ``url`` names a primary through Redis Sentinel (``sentinel://...``)."""
    return scheme(url) == SENTINEL_SCHEME


def _part(text: str, source: str) -> tuple[str, int, int | None, str | None, str | None]:
    """``(host, port, db, username, password)`` of one ``sentinel://`` part."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}: {why} in sentinel URL part {_hide_password(text)!r}")

    parts = urlsplit(text)
    if parts.scheme.lower() != SENTINEL_SCHEME:
        raise bad(f"every part must be sentinel://host:port, not {parts.scheme or 'no'} scheme")
    if parts.query or parts.fragment:
        raise bad("options after '?' or '#' are not supported")
    try:
        port = parts.port or SENTINEL_PORT
    except ValueError:
        raise bad("the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise bad("the host is missing")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise bad(f"the database {path!r} is not a number")
    db = int(path) if path else None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, db, username, password


def parse_sentinel_url(url: str, source: str = "Redis URL") -> SentinelUrl:
    """Parse ``sentinel://h1:26379[/db];sentinel://h2:26379;...`` (see the module doc).

    Args:
        url: The URL.
        source: What the URL came from, for the error (``DAGFLOW_BROKER_URL``).

    Raises:
        ConfigError: A part is not a ``sentinel://host[:port][/db]`` URL, or a later part
            names another database, user or password than the first.
    """
    chunks = [chunk.strip() for chunk in url.split(SEPARATOR) if chunk.strip()]
    if not chunks:
        raise ConfigError(f"{source}: the sentinel URL names no sentinel")
    sentinels: list[tuple[str, int]] = []
    first = SentinelUrl(())
    for n, chunk in enumerate(chunks):
        host, port, db, username, password = _part(chunk, source)
        sentinels.append((host, port))
        if n == 0:
            first = SentinelUrl((), db or 0, username, password)
            continue
        # kombu and Celery read the database and credentials of the first part only: a
        # later part that says otherwise would make dagflow and Celery disagree.
        for key, value, wanted in (
            ("database", db, first.db),
            ("user", username, first.username),
            ("password", password, first.password),
        ):
            if value is not None and value != wanted:
                raise ConfigError(
                    f"{source}: a later part of the sentinel URL names another {key} than the "
                    "first; Celery uses the first part's (give it there, or in every part)"
                )
    return dataclasses.replace(first, sentinels=tuple(sentinels))


def check_redis_url(url: str, source: str = "Redis URL") -> None:
    """Raise :class:`~dagflow.errors.ConfigError` (naming ``source``) for a URL dagflow cannot
    open; a non-Redis URL (``amqp://``, ``memory://``) is left to Celery."""
    if is_sentinel_url(url):
        parse_sentinel_url(url, source)


def check_master_name(name: str, source: str = "DAGFLOW_REDIS_MASTER_NAME") -> str:
    """Return ``name`` if it can name a Sentinel primary (no blanks), else raise ConfigError."""
    if not name or any(ch.isspace() for ch in name):
        raise ConfigError(f"{source}={name!r} must be a primary's name without spaces")
    return name


def transport_options(url: str | None, master_name: str) -> dict[str, Any]:
    """Celery transport options a URL needs besides dagflow's own: ``master_name`` for a
    Sentinel URL (kombu and Celery's result backend refuse to connect without it)."""
    return {"master_name": master_name} if is_sentinel_url(url) else {}


def same_redis(a: str | None, b: str | None) -> bool:
    """True when two URLs name the same database of the same server or Sentinel primary.

    A Sentinel URL lists sentinels, not the primary: two lists that share a sentinel watch
    the same primary (dagflow has one master name), so they are the same Redis.
    """
    if a is None or b is None:
        return False
    if a == b:
        return True
    if not (is_sentinel_url(a) and is_sentinel_url(b)):
        return False
    left, right = parse_sentinel_url(a), parse_sentinel_url(b)
    return left.db == right.db and bool(set(left.sentinels) & set(right.sentinels))


def _hide_password(text: str, mask: str = "***") -> str:
    parts = urlsplit(text)
    if not parts.password:
        return text
    netloc = parts.netloc.replace(f":{parts.password}@", f":{mask}@", 1)
    return parts._replace(netloc=netloc).geturl()


def redis_client(
    url: str, *, master_name: str = DEFAULT_MASTER_NAME, **options: Any
) -> redis.Redis:
    """Open a client on the Redis ``url`` names (see the module doc for the forms).

    Every dagflow process opens Redis here, so a Sentinel deployment is one setting away
    for all of them (workers, runner, Beat, collector, dashboard).

    Args:
        url: A ``redis://``, ``rediss://``, ``unix://`` or ``sentinel://`` URL.
        master_name: The primary's name, for a Sentinel URL (``DAGFLOW_REDIS_MASTER_NAME``).
        **options: ``redis.Redis`` options (``decode_responses``, timeouts...). The
            ``socket_*`` ones apply to the sentinels too, so a dead sentinel cannot hang a
            caller that asked for short timeouts.

    Returns:
        A ``redis.Redis``. For a Sentinel URL its connections find the primary through the
        sentinels, again after each lost connection, so they follow a promotion; closing
        it also closes its connections to the sentinels.

    Raises:
        ConfigError: The URL is not one dagflow can open (the message names the problem).
    """
    # redis-py is imported here, not at the top: Settings.from_env checks URLs with this
    # module, and `dagflow plan` should not pay for importing redis-py.
    from redis.sentinel import Sentinel

    if not is_sentinel_url(url):
        if scheme(url) not in SERVER_SCHEMES:
            raise ConfigError(
                f"{_hide_password(url)!r} is not a Redis URL (redis://, rediss://, unix:// or "
                "sentinel://)"
            )
        try:
            client: redis.Redis = _sealed_classes()[0].from_url(url, **options)
        except ValueError as exc:  # a bad port, db or query option
            raise ConfigError(f"{_hide_password(url)!r}: {exc}") from None
        client.dagflow_url = _hide_password(url, URL_MASK)  # type: ignore[attr-defined]
        return client
    parsed = parse_sentinel_url(url)
    sentinel = Sentinel(
        parsed.sentinels,
        **{k: v for k, v in options.items() if k.startswith("socket_")},
    )
    client = sentinel.master_for(
        check_master_name(master_name),
        redis_class=_sentinel_redis_class(),
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )
    client.dagflow_url = _hide_password(url, URL_MASK)  # type: ignore[attr-defined]
    return client


@functools.cache
def _sealed_classes() -> tuple[type[redis.Redis], type[redis.client.Pipeline]]:
    """The client and pipeline classes of every dagflow Redis client: redis-py's, except that
    an unreachable or silent server, or a primary refusing writes for want of replicas
    (``NOREPLICAS``), raises :class:`~dagflow.errors.StoreUnavailable` (naming the URL,
    password hidden) instead of redis-py's ``ConnectionError``/``TimeoutError``/``ResponseError``.

    Sealing the client, not each store method, covers every command, script and pipeline of
    every store at one point, so no caller outside the stores needs redis-py's exceptions.
    """
    import redis
    from redis.client import Pipeline

    from dagflow.errors import StoreUnavailable

    lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def seal(exc: redis.exceptions.RedisError, url: str) -> None:
        """Raise StoreUnavailable from ``exc`` when it means the store cannot be used now:
        unreachable, silent, or refusing writes (NOREPLICAS: a primary with
        min-replicas-to-write and no replica in sync refuses a command, a script's first
        write or a queued MULTI command, so nothing was written and it is waited out like
        an outage). Return for any other error, which the caller raises as it is."""
        text = str(exc) if isinstance(exc, redis.exceptions.ResponseError) else ""
        if isinstance(exc, lost) or text.startswith("NOREPLICAS") or "error: NOREPLICAS" in text:
            raise StoreUnavailable(url, exc) from exc

    class SealedPipeline(Pipeline):
        dagflow_url = "redis"

        def execute(self, raise_on_error: bool = True) -> list[Any]:
            try:
                return super().execute(raise_on_error)
            except redis.exceptions.RedisError as exc:
                seal(exc, self.dagflow_url)
                raise

        def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
            try:
                return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except redis.exceptions.RedisError as exc:
                seal(exc, self.dagflow_url)
                raise

    class SealedRedis(redis.Redis):
        dagflow_url = "redis"

        def execute_command(self, *args: Any, **options: Any) -> Any:
            try:
                return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except redis.exceptions.RedisError as exc:
                seal(exc, self.dagflow_url)
                raise

        def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
            pipe = SealedPipeline(
                self.connection_pool, self.response_callbacks, transaction, shard_hint
            )
            pipe.dagflow_url = self.dagflow_url
            return pipe

    return SealedRedis, SealedPipeline


@functools.cache
def _sentinel_redis_class() -> type[redis.Redis]:
    class SentinelRedis(_sealed_classes()[0]):  # type: ignore[misc]
        """A client of a Sentinel primary that also closes its sentinel connections."""

        def close(self) -> None:
            manager = getattr(self.connection_pool, "sentinel_manager", None)
            super().close()
            if manager is not None:
                manager.close()

    return SentinelRedis
