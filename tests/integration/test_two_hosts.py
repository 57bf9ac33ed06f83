"""Two-host proof: workers on two network hosts share Redis and nothing else.

The second host is a network namespace joined to this one by a veth pair
(:mod:`tests.support.netns`). A private ``redis-server`` listens on the host end of the
pair; one worker runs on the host, one inside the namespace (it reaches Redis only over
the veth), each with event and state paths of its own that must stay unwritten, and
``dagflow events collect`` writes the one event log on the host. Cutting the veth is a
network partition: the cut-off worker's step is taken over after its lease expires, and
its late result is refused when the link comes back.

Needs root and iproute2 (CI has both); elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.client.runner import RunHandle, Runner, RunResult, WaitTimeout
from dagflow.events.jsonl import iter_records
from dagflow.settings import Settings
from tests.support.dags import make_dag, task
from tests.support.netns import NetNamespace, netns_unavailable
from tests.support.processes import ROOT, log_tail, start_worker, stop_worker, worker_env
from tests.support.redis_server import RedisServer, redis_server_binary
from tests.support.services import require
from tests.support.waiting import wait_for
from tests.support.workflows import network_namespace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: Lease and sweep interval here, in seconds: a cut-off step is taken over within both.
LEASE_S = 3.0
SWEEP_S = 0.5
#: How long the step that gets cut off sleeps, in seconds.
LONG_STEP_S = 8.0
#: Allowance for worker start-up, message hops and polling, in seconds.
SLACK_S = 5.0


class TwoHosts:
    """Redis on the host end of the veth, a collector, and workers on either side.

    Args:
        root: Folder for every file of the test (each process gets a folder of its own).
        ns: The namespace (the second host), already created.
    """

    def __init__(self, root: Path, ns: NetNamespace) -> None:
        self.root = root
        self.ns = ns
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.server = RedisServer.start(root / "redis", bind=(ns.host_addr,))
        self.broker = self.server.url(0, host=ns.host_addr)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.collector: subprocess.Popen[bytes] | None = None
        try:
            self.runner = Runner(Settings.from_env(self.env("client")))
        except BaseException:
            self.server.stop()
            raise

    def env(self, name: str) -> dict[str, str]:
        """Environment of process ``name``: its own ORCH_EVENTS_PATH and STATE_STORE_PATH."""
        return worker_env(
            self.broker,
            self.events_path(name),
            self.root / name / "state.jsonl",
            DAGFLOW_EVENTS="stream",
            DAGFLOW_LEASE_S=str(LEASE_S),
            DAGFLOW_SWEEP_S=str(SWEEP_S),
            # Longer than the cut: the cut-off worker's finish must reach Redis afterwards.
            DAGFLOW_STORE_RETRY_S="60",
        )

    def events_path(self, name: str) -> Path:
        """Process ``name``'s ORCH_EVENTS_PATH."""
        return self.root / name / "events.jsonl"

    def start_collector(self) -> None:
        """Start ``dagflow events collect`` on the host."""
        with (self.logs / "collector.log").open("wb") as log:
            self.collector = subprocess.Popen(
                [sys.executable, "-m", "dagflow", "events", "collect"],
                cwd=ROOT,
                env=self.env("collector"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def worker(self, name: str, *, inside: bool) -> None:
        """Start worker ``name`` (node ``name@<host>``, one pool process), in the namespace
        if ``inside``; returns once it consumes."""
        self.workers[name] = start_worker(
            self.env(name),
            self.logs / f"worker-{name}.log",
            concurrency=1,
            name=f"{name}@%h",
            prefix=self.ns.prefix if inside else (),
        )

    def collected(self, run_id: str) -> list[dict[str, Any]]:
        """The run's lines in the collector's event log, in file order."""
        return [r for r in iter_records(self.events_path("collector")) if r.get("run_id") == run_id]

    def report(self) -> str:
        """The tail of every log, for a failure message."""
        parts = [f"--- {log.name}\n{log_tail(log)}" for log in sorted(self.logs.glob("*.log"))]
        parts.append(f"--- redis\n{self.server.log_tail()}")
        return "\n".join(parts)

    def wait_for(self, check: Callable[[], object], timeout: float, what: str) -> None:
        """:func:`wait_for` that adds every log's tail to its failure."""
        try:
            wait_for(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report()}") from None

    def wait(self, handle: RunHandle, timeout: float) -> RunResult:
        """Wait for the run, adding every log's tail to a timeout."""
        try:
            return handle.wait(timeout=timeout)
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\n{self.report()}") from None

    def close(self) -> None:
        """Stop the workers, the collector, the runner and Redis (what this test started)."""
        for proc in self.workers.values():
            stop_worker(proc, timeout=5)
        self.workers.clear()
        if self.collector is not None:
            stop_worker(self.collector, timeout=5)  # SIGTERM to its group, then SIGKILL
        self.runner.close(wait=False)
        self.server.stop()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    """A namespace, Redis on its veth and a collector; deleted afterwards, whatever happened."""
    require(redis_server_binary() is not None, "redis-server is not installed")
    reason = netns_unavailable()
    require(reason is None, f"two-host test: {reason}")
    ns = NetNamespace()
    try:
        ns.create()
    except RuntimeError as exc:  # e.g. a container without CAP_SYS_ADMIN
        require(False, f"two-host test: cannot create a network namespace: {exc}")
    try:
        h = TwoHosts(tmp_path, ns)
        try:
            h.start_collector()
            yield h
        finally:
            h.close()
    finally:
        ns.delete()


def _where(path: Path) -> list[str]:
    """The network namespace of each attempt of ``test.where_sleep``, in order."""
    if not path.exists():
        return []
    return [line.split()[1] for line in path.read_text().splitlines()]


def _named(records: list[dict[str, Any]], event: str, task_id: str | None = None) -> list[Any]:
    return [
        r for r in records if r["event"] == event and (task_id is None or r["task_id"] == task_id)
    ]


def test_a_run_spreads_over_two_hosts_and_the_collector_logs_every_event_in_order(
    hosts: TwoHosts, tmp_path: Path
) -> None:
    # Given a worker on the host and one in the namespace, one pool process each
    hosts.worker("host", inside=False)
    hosts.worker("ns", inside=True)
    # When a fan-out of 8 sleeping tasks runs
    ids = [f"t{i}" for i in range(8)]
    params = {"dir": str(tmp_path), "seconds": 0.5}
    handle = hosts.runner.submit(
        make_dag([task(t, "test.where_sleep", params=params) for t in ids])
    )
    result = hosts.wait(handle, 60)
    assert (result.status, result.succeeded) == ("success", 8)
    # Then tasks ran on both hosts: two network namespaces, two worker names
    assert len(set(_where(tmp_path / "where.txt"))) == 2, (tmp_path / "where.txt").read_text()
    hosts.wait_for(
        lambda: _named(hosts.collected(handle.run_id), "dag_done"), 20, "dag_done collected"
    )
    records = hosts.collected(handle.run_id)
    workers = {r["worker"].split("@")[0] for r in _named(records, "task_start")}
    assert workers == {"host", "ns"}
    # And the collector's log has every event of the run, once, in order
    assert records[0]["event"] == "dag_start" and records[-1]["event"] == "dag_done"
    assert len(_named(records, "dag_start")) == len(_named(records, "dag_done")) == 1
    for t in ids:
        (start,) = _named(records, "task_start", t)
        (ok,) = _named(records, "task_ok", t)
        assert records.index(start) < records.index(ok)
        assert start["timestamp"] <= ok["timestamp"]
        assert start["worker"] == ok["worker"] and start["fence"] == ok["fence"] == 1
    stamps = [r["timestamp"] for r in records]
    assert stamps[0] == min(stamps) and stamps[-1] == max(stamps)
    assert len(records) == 2 + 2 * len(ids)
    assert len({r["event_id"] for r in records}) == len(records)
    # And no process wrote a file of its own: the stream is the only way events travel
    for name in ("host", "ns", "client"):
        assert not hosts.events_path(name).exists(), name
        assert not (tmp_path / name / "state.jsonl").exists(), name


def test_a_cut_off_host_loses_its_step_and_its_late_result_is_refused(
    hosts: TwoHosts, tmp_path: Path
) -> None:
    # Given a long step running on the worker in the namespace (the only one consuming
    # when the run is submitted), and then a worker on the host
    hosts.worker("ns", inside=True)
    params = {"dir": str(tmp_path), "seconds": LONG_STEP_S}
    dag = make_dag([task("long", "test.where_sleep", params=params), task("after", deps=("long",))])
    handle = hosts.runner.submit(dag)
    hosts.wait_for(lambda: _where(tmp_path / "where.txt"), 30, "the long step starts")
    assert _where(tmp_path / "where.txt")[0] != network_namespace()  # it runs in the namespace
    hosts.worker("host", inside=False)
    # When the namespace's link is cut
    cut = time.monotonic()
    hosts.ns.cut()
    # Then the host takes the step over once the lease expires, and the run completes
    result = hosts.wait(handle, LEASE_S + SWEEP_S + LONG_STEP_S + SLACK_S)
    assert (result.status, result.succeeded) == ("success", 2)
    assert time.monotonic() - cut <= LEASE_S + SWEEP_S + LONG_STEP_S + SLACK_S
    assert _where(tmp_path / "where.txt")[1] == network_namespace()
    # When the link comes back
    hosts.ns.restore()
    # Then the cut-off worker's late result (fence 1) is refused, and logged as such
    hosts.wait_for(
        lambda: _named(hosts.collected(handle.run_id), "task_lease_lost", "long"),
        60,
        "task_lease_lost collected",
    )
    records = hosts.collected(handle.run_id)
    (lost,) = _named(records, "task_lease_lost", "long")
    assert (lost["worker"].split("@")[0], lost["fence"]) == ("ns", 1)
    starts = _named(records, "task_start", "long")
    assert [(r["worker"].split("@")[0], r["fence"]) for r in starts] == [("ns", 1), ("host", 2)]
    for t in ("long", "after"):
        (ok,) = _named(records, "task_ok", t)
        assert ok["worker"].split("@")[0] == "host"
    assert len(_named(records, "dag_done")) == 1
    outputs = handle.outputs()
    assert outputs["long"]["netns"] == network_namespace()  # the refused output was discarded
