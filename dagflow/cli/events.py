"""``dagflow events collect`` and ``dagflow events tail``: the event log across hosts."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from dagflow.cli.common import EXIT_OK, verbose_option

#: Seconds between looks at the file when following it (file mode).
FOLLOW_POLL_S = 0.5


@click.group(short_help="collect and follow the event log (from every host)")
def events() -> None:
    """The event log: collect it from the Redis stream, or follow it live."""


@events.command(
    short_help="write the stream's events to ORCH_EVENTS_PATH / STATE_STORE_PATH",
    epilog="\b\nExamples:\n  dagflow events collect        # until Ctrl+C or SIGTERM",
)
@verbose_option()
def collect() -> int:
    """Write every event of the Redis stream to the one JSONL log, until stopped.

    Run one (or two, for availability) next to the dashboard. A collector killed at any
    moment and started again loses no event and writes none twice.
    """
    from dagflow.errors import ConfigError
    from dagflow.settings import Settings
    from dagflow.stores.transport import safe_url
    from dagflow.wiring import collector as make_collector

    settings = Settings.from_env()
    if not settings.events_via_stream:
        raise ConfigError(
            "dagflow events collect needs DAGFLOW_EVENTS=stream and a broker "
            "(DAGFLOW_BROKER_URL): without them every process writes ORCH_EVENTS_PATH itself"
        )
    collector = make_collector(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(
        f"dagflow events collect: {safe_url(settings.redis_url)} -> {settings.events_path}, "
        f"{settings.state_path}",
        err=True,
    )
    collector.run(stop)
    click.echo(f"collected {collector.written} lines ({collector.skipped} duplicates)", err=True)
    return EXIT_OK


@events.command(
    short_help="print events (of a run, a tenant), optionally following new ones",
    epilog=(
        "\b\nExamples:\n"
        "  dagflow events tail --run 3f2c9e...        # every event of one run\n"
        "  dagflow events tail --tenant acme --follow  # live, one tenant"
    ),
)
@click.option("--run", "run_id", help="only this run's events")
@click.option("--tenant", help="only this tenant's events")
@click.option("--limit", type=int, default=100, show_default=True, help="newest events shown")
@click.option("--follow", "-f", is_flag=True, help="keep printing new events until Ctrl+C")
@verbose_option()
def tail(run_id: str | None, tenant: str | None, limit: int, follow: bool) -> int:
    """Print events as JSON lines, oldest first, from any host.

    With DAGFLOW_EVENTS=stream (a broker) they come from the Redis stream, so every host's
    events are there, collected or not; otherwise from ORCH_EVENTS_PATH.
    """
    from dagflow.settings import Settings

    settings = Settings.from_env()

    def wanted(record: dict[str, Any]) -> bool:
        return (run_id is None or record.get("run_id") == run_id) and (
            tenant is None or record.get("tenant_id") == tenant
        )

    source = _stream_source(settings) if settings.events_via_stream else None
    records = [r for r in source.read() if wanted(r)] if source else _file_records(settings, wanted)
    if not follow:
        for record in records[-limit:] if limit > 0 else records:
            _print(record)
        return EXIT_OK
    for record in records[-limit:] if limit > 0 else records:
        _print(record)
    feed = _follow_stream(source) if source else _follow_file(settings.events_path)
    try:
        for record in feed:
            if wanted(record):
                _print(record)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _print(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _stream_source(settings: Any) -> Any:
    from dagflow.stores.event_stream import RedisEventStream

    return RedisEventStream(
        settings.require_redis_url(), settings.events_maxlen, master_name=settings.redis_master_name
    )


def _file_records(settings: Any, wanted: Any) -> list[dict[str, Any]]:
    from dagflow.events.jsonl import iter_records

    return [r for r in iter_records(settings.events_path) if wanted(r)]


def _follow_stream(source: Any) -> Iterator[dict[str, Any]]:
    from dagflow.keys import EVENTS_STREAM
    from dagflow.stores.event_stream import EVENTS_LOG

    last = "$"
    while True:
        reply = source.client.xread({EVENTS_STREAM: last}, count=1000, block=1000)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                if fields.get("log", EVENTS_LOG) == EVENTS_LOG:
                    yield json.loads(fields["data"])


def _follow_file(path: Any) -> Iterator[dict[str, Any]]:
    offset = path.stat().st_size if path.exists() else 0
    while True:
        time.sleep(FOLLOW_POLL_S)
        if not path.exists() or path.stat().st_size <= offset:
            continue
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1
        offset += complete
        for line in data[:complete].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


COMMANDS = (events,)
