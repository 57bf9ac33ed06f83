"""The collector writes the one event log from the stream: nothing lost, nothing twice.

Each test owns a private redis-server. Events are appended with the same
:class:`~dagflow.stores.event_stream.RedisEventStream` every worker uses; collectors run as
``python -m dagflow events collect`` subprocesses that the tests kill with SIGKILL.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dagflow.clock import now_iso
from dagflow.events.collector import Collector, collector_lag
from dagflow.events.log import Event
from dagflow.stores.event_stream import RedisEventStream
from tests.support.processes import ROOT
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer.start(tmp_path / "redis")
    try:
        yield srv
    finally:
        srv.stop()


def event(i: int, run_id: str = "r1") -> Event:
    return Event(
        timestamp=now_iso(),
        event="task_ok",
        run_id=run_id,
        dag_name="d",
        tenant_id="t",
        task_id=f"t{i}",
        workflow_ref="w",
        attempt=1,
        duration_s=0.001,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class Collectors:
    """``dagflow events collect`` subprocesses on one stream, writing one pair of files."""

    def __init__(self, server: RedisServer, root: Path) -> None:
        self.root = root
        self.events = root / "events.jsonl"
        self.state = root / "state.jsonl"
        self.env = {
            **os.environ,
            "DAGFLOW_BROKER_URL": server.url(0),
            "ORCH_EVENTS_PATH": str(self.events),
            "STATE_STORE_PATH": str(self.state),
            "DAGFLOW_COLLECTOR_CLAIM_S": "1",
            "PYTHONPATH": str(ROOT),
        }
        self.client = redis.Redis.from_url(server.url(0), decode_responses=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagflow", "events", "collect"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def caught_up(self, timeout: float = 30) -> None:
        wait_for(
            lambda: collector_lag(self.client, int(time.time() * 1000)).entries == 0,
            timeout,
            "the collectors wrote every entry",
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.client.close()


@pytest.fixture
def collectors(server: RedisServer, tmp_path: Path) -> Iterator[Collectors]:
    c = Collectors(server, tmp_path)
    try:
        yield c
    finally:
        c.stop()


def test_a_collector_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    server: RedisServer, collectors: Collectors
) -> None:
    # Given 20,000 events and scheduler lines appended while a collector writes them
    stream = RedisEventStream(server.url(0))
    first = collectors.start()
    for i in range(10_000):
        stream.emit(event(i))
    stream.record_events(
        [{"event": "schedule_enqueued", "schedule_id": f"s{i}"} for i in range(50)]
    )
    wait_for(lambda: len(lines(collectors.events)) > 1_000, 30, "the collector started writing")
    # When the collector is SIGKILLed mid-way, more events arrive, and it is started again
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    for i in range(10_000, 20_000):
        stream.emit(event(i))
    collectors.start()
    collectors.caught_up()
    # Then every event is in the log exactly once, in stream order, with its event id
    written = lines(collectors.events)
    ids = [e["event_id"] for e in written]
    assert len(written) == 20_000 and len(set(ids)) == 20_000
    assert [e["task_id"] for e in written] == [f"t{i}" for i in range(20_000)]
    state = lines(collectors.state)
    assert [s["schedule_id"] for s in state] == [f"s{i}" for i in range(50)]


def test_lines_written_but_not_acknowledged_are_not_written_again(
    server: RedisServer, tmp_path: Path
) -> None:
    # Given a collector that wrote a batch and died before acknowledging it
    stream = RedisEventStream(server.url(0))
    for i in range(100):
        stream.emit(event(i))
    client = redis.Redis.from_url(server.url(0), decode_responses=True)
    events, state = tmp_path / "events.jsonl", tmp_path / "state.jsonl"
    crashed = Collector(client, events, state, name="c1")
    crashed.setup()

    def die(*_: object) -> None:
        raise ConnectionError("killed between the write and the ack")

    crashed.client = _NoAck(client, die)  # type: ignore[assignment]
    with pytest.raises(ConnectionError):
        crashed.collect_once(block_ms=100)
    assert len(lines(events)) == 100
    # When it comes back (same consumer name: its entries are still pending for it)
    again = Collector(client, events, state, name="c1")
    again.setup()
    while again.collect_once(block_ms=100):
        pass
    # Then the pending entries are acknowledged without a second copy in the log
    assert len(lines(events)) == 100 and again.skipped == 100
    assert collector_lag(client, int(time.time() * 1000)).entries == 0
    client.close()


class _NoAck:
    """A client whose XACK fails: the process died after its write."""

    def __init__(self, client: redis.Redis, fail: Any) -> None:
        self._client = client
        self._fail = fail

    def __getattr__(self, name: str) -> Any:
        return self._fail if name == "xack" else getattr(self._client, name)


def test_two_collectors_share_the_work_and_one_takes_over_when_the_other_dies(
    server: RedisServer, collectors: Collectors
) -> None:
    # Given two collectors writing one log
    stream = RedisEventStream(server.url(0))
    a, _ = collectors.start(), collectors.start()
    for i in range(5_000):
        stream.emit(event(i))
    wait_for(lambda: len(lines(collectors.events)) > 500, 30, "writing")
    # When one of them is SIGKILLed and more events arrive
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(10)
    for i in range(5_000, 10_000):
        stream.emit(event(i))
    # Then the other writes everything, including what the dead one had read and not written
    collectors.caught_up()
    ids = [e["event_id"] for e in lines(collectors.events)]
    assert len(ids) == 10_000 and len(set(ids)) == 10_000


def test_the_collector_refuses_to_run_without_the_stream(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "QUEUE_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "dagflow", "events", "collect"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "DAGFLOW_EVENTS=stream" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_dashboard_says_how_far_behind_the_collector_is(
    server: RedisServer, collectors: Collectors
) -> None:
    from dagflow.stores.queue_stats import with_collector_lag

    # Given 10 events in the stream and no collector running
    stream = RedisEventStream(server.url(0))
    for i in range(10):
        stream.emit(event(i))
    time.sleep(0.05)
    # Then the panel's stats say 10 events are not written yet, and how old the oldest is
    stats = with_collector_lag(None, server.url(0))
    assert stats is not None and stats.collector_behind == 10
    assert stats.collector_lag_s is not None and stats.collector_lag_s >= 0.0
    # When a collector catches up, the lag is zero
    collectors.start()
    collectors.caught_up()
    caught = with_collector_lag(None, server.url(0))
    assert caught is not None and (caught.collector_behind, caught.collector_lag_s) == (0, 0.0)


def tail_env(server: RedisServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_"))},
        "DAGFLOW_BROKER_URL": server.url(0),
        "ORCH_EVENTS_PATH": str(tmp_path / "never-written.jsonl"),
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def test_events_tail_reads_one_run_or_tenant_from_the_stream(
    server: RedisServer, tmp_path: Path
) -> None:
    # Given events of two runs of two tenants in the stream, and no collector
    stream = RedisEventStream(server.url(0))
    for i in range(3):
        stream.emit(event(i, run_id="r1"))
        stream.emit(event(i, run_id="r2").model_copy(update={"tenant_id": "other"}))

    def tail(*args: str) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-m", "dagflow", "events", "tail", *args],
            cwd=ROOT, env=tail_env(server, tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    # Then --run and --tenant select from the stream, in order, from any process
    assert [(e["run_id"], e["task_id"]) for e in tail("--run", "r1")] == [
        ("r1", "t0"), ("r1", "t1"), ("r1", "t2"),
    ]  # fmt: skip
    assert {e["run_id"] for e in tail("--tenant", "other")} == {"r2"}
    assert [e["task_id"] for e in tail("--limit", "2")] == ["t2", "t2"]
    assert not (tmp_path / "never-written.jsonl").exists()


def test_events_tail_follow_prints_new_events(server: RedisServer, tmp_path: Path) -> None:
    # Given `dagflow events tail --follow --run r1` running
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagflow", "events", "tail", "--follow", "--run", "r1"],
        cwd=ROOT,
        env=tail_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # When events arrive after it started (it reads from the stream's end)
        stream = RedisEventStream(server.url(0))
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 30
        while not line and time.monotonic() < deadline:
            stream.emit(event(7, run_id="r2"))
            stream.emit(event(8, run_id="r1"))
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
        # Then the run's new event is printed as one JSON line, the other run's is not
        assert json.loads(line)["task_id"] == "t8", proc.stderr.read() if proc.stderr else ""
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
