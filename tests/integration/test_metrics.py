"""``dagflow metrics`` against real parts: a private redis-server, ``celery -A dagflow worker``
subprocesses, the exporter as a subprocess, and Debian's Prometheus scraping it.

The counts are checked against the event stream itself: every entry the stream holds is
mapped with the same pure function (:func:`dagflow.metrics.mapping.updates`) and the sums
must equal what the endpoint serves, after a worker and the exporter were SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dagflow import workflows
from dagflow.client.runner import Runner
from dagflow.clock import now_iso
from dagflow.events.log import Event
from dagflow.keys import EVENTS_STREAM
from dagflow.metrics.catalog import METRICS
from dagflow.metrics.exporter import Ingester
from dagflow.metrics.mapping import Buckets, field, parse_field, updates
from dagflow.scheduling.job import Job, JobStatus
from dagflow.settings import Settings
from dagflow.stores.event_stream import RedisEventStream
from dagflow.stores.metrics import RedisMetricsStore
from dagflow.stores.redis_pools import RedisPools
from dagflow.wiring import job_store
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT, start_worker, stop_worker, worker_env
from tests.support.prometheus import Exporter, Prometheus, http_get, prometheus_binary
from tests.support.redis_server import RedisServer
from tests.support.services import require
from tests.support.waiting import wait_for, wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Series = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer.start(tmp_path / "redis")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def env(server: RedisServer, tmp_path: Path) -> dict[str, str]:
    return worker_env(
        server.url(0),
        tmp_path / "events.jsonl",
        tmp_path / "state.jsonl",
        DAGFLOW_EVENTS="stream",
        DAGFLOW_LEASE_S="2",
        DAGFLOW_SWEEP_S="0.5",
    )


@pytest.fixture
def runner(env: dict[str, str]) -> Iterator[Runner]:
    settings = Settings.from_env(env)
    workflows.load(settings.workflow_modules)
    r = Runner(settings)
    yield r
    r.close()


def expected_counters(url: str) -> dict[Series, float]:
    """What the endpoint must serve for the counters: the stream's entries, mapped and summed."""
    totals: Counter[Series] = Counter()
    for _, log, record in RedisEventStream(url).entries():
        for update in updates(log, record):
            if update.op != "c":
                continue
            name, values = parse_field(update.field)
            if name.endswith(("_bucket", "_count")):
                continue  # histograms: checked through their _count below
            totals[(name, values)] += update.amount
    return dict(totals)


def served_counters(exporter: Exporter) -> dict[Series, float]:
    """The counter samples of one scrape, as ``(name, label values in catalog order)``."""
    from dagflow.metrics.catalog import BY_NAME

    out = {}
    for (name, labels), value in exporter.samples().items():
        metric = BY_NAME.get(name)
        if metric is None or metric.kind != "counter":
            continue
        found = dict(labels)
        out[(name, tuple(found[k] for k in metric.labels))] = value
    return out


def test_prometheus_scrapes_the_run_and_task_counters_of_a_failing_dag(
    env: dict[str, str], runner: Runner, tmp_path: Path
) -> None:
    require(
        prometheus_binary() is not None, "prometheus is not installed (apt-get install prometheus)"
    )
    # Given a worker, the exporter, and a real Prometheus scraping it every second
    worker = start_worker(env, tmp_path / "worker.log", concurrency=2)
    exporter = Exporter(env, tmp_path / "exporter.log")
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{exporter.port}"])
    try:
        # When a DAG whose task fails after one retry runs to its end, as a scheduled run
        dag = make_dag(
            [
                task("extract"),
                task("load", "test.fail", deps=("extract",), retries=1),
                task("report", deps=("load",)),
            ],
            name="nightly",
            tenant="acme",
        )
        ok = make_dag([task("only")], name="small", tenant="acme")
        assert runner.submit(dag).wait(timeout=60).status == "failed"
        assert runner.submit(ok, labels={"schedule_id": "hourly"}).wait(timeout=60).ok
        # Then Prometheus has the run and task counters from dagflow's endpoint
        queries = {
            'dagflow_runs_started_total{dag="nightly",tenant="acme"}': 1,
            'dagflow_runs_finished_total{dag="nightly",tenant="acme",status="failed"}': 1,
            'dagflow_runs_finished_total{dag="small",status="success"}': 1,
            'dagflow_task_attempts_total{dag="nightly",task="load",outcome="failed"}': 1,
            'dagflow_task_attempts_total{dag="nightly",task="load",outcome="retry"}': 1,
            'dagflow_task_attempts_total{dag="nightly",task="extract",outcome="ok"}': 1,
            'dagflow_tasks_skipped_total{dag="nightly",task="report"}': 1,
            'dagflow_run_duration_seconds_count{dag="nightly",status="failed"}': 1,
            'dagflow_task_duration_seconds_count{dag="nightly",task="load"}': 2,
            'sum(dagflow_task_queue_wait_seconds_count{dag="nightly",queue="celery"})': 3,
            "dagflow_build_info": 1,
        }
        for expr, value in queries.items():
            wait_for(lambda e=expr, v=value: prometheus.value(e) == v, 30, f"{expr} == {value}")  # type: ignore[misc]
        # (the schedule's last success is the end of its run, within this test)
        last = prometheus.value(
            'dagflow_schedule_last_success_timestamp_seconds{schedule="hourly"}'
        )
        assert last is not None and last > 0
        # And every query of the Grafana dashboard is valid PromQL for this Prometheus
        board = json.loads((ROOT / "dashboards" / "dagflow-grafana.json").read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                prometheus.query(target["expr"].replace("$dag", ".*").replace("$tenant", ".*"))
        # And no series carries a run id
        assert not any("run" in s["metric"] for s in prometheus.query("{__name__=~'dagflow_.*'}"))
    finally:
        prometheus.stop()
        exporter.kill()
        stop_worker(worker)


def test_health_and_content_negotiation(env: dict[str, str], tmp_path: Path) -> None:
    exporter = Exporter(env, tmp_path / "exporter.log")
    try:
        status, body = http_get(exporter.url("/health"))
        assert status == 200 and '"ok": true' in body
        import urllib.request

        request = urllib.request.Request(
            exporter.url(), headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
            assert reply.read().decode().rstrip().endswith("# EOF")
        status, text = http_get(exporter.url())
        assert status == 200
        # Every family of the catalog is served, even before its first event
        for metric in METRICS:
            assert f"# TYPE {metric.name} {metric.kind}" in text, metric.name
        assert http_get(exporter.url("/nope"))[0] == 404
    finally:
        exporter.kill()


def test_without_a_broker_there_is_nothing_to_scrape(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "QUEUE_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "dagflow", "metrics"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nothing to scrape" in proc.stderr


def test_counts_match_the_stream_after_a_worker_and_the_exporter_are_killed(
    server: RedisServer, env: dict[str, str], runner: Runner, tmp_path: Path
) -> None:
    # Given a worker, the exporter, and ten runs whose tasks sleep
    first = start_worker(env, tmp_path / "w1.log", concurrency=2)
    second: subprocess.Popen[bytes] | None = None
    exporter = Exporter(env, tmp_path / "exporter.log")
    try:
        dag = make_dag(
            [
                task("a", "test.pid_sleep", params={"dir": str(tmp_path), "seconds": 0.3}),
                task(
                    "b",
                    "test.pid_sleep",
                    deps=("a",),
                    params={"dir": str(tmp_path), "seconds": 0.3},
                ),
                task("c", "test.fail", deps=("a",)),
            ],
            name="crashy",
        )
        handles = [runner.submit(dag) for _ in range(10)]
        wait_for_file(tmp_path / "pids.txt")
        # When the worker is SIGKILLed mid-DAG, and another one started (its sweeper finds the
        # dead worker's leases expired and sends those steps again)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        second = start_worker(env, tmp_path / "w2.log", concurrency=2)
        # and the exporter is SIGKILLed while runs go on, then started again
        exporter.kill()
        exporter = Exporter(env, tmp_path / "exporter.log")
        for handle in handles:
            assert handle.wait(timeout=90).status == "failed"
        # Then once it caught up, every counter equals the stream's events, mapped and summed
        want = expected_counters(server.url(0))
        assert want[("dagflow_runs_finished_total", ("crashy", "t1", "failed"))] == 10
        wait_for(lambda: served_counters(exporter) == want, 30, "the exporter caught up")
        # and the histograms counted each duration once
        samples = exporter.samples()
        ok_b = want[("dagflow_task_attempts_total", ("crashy", "b", "ok"))]
        failed_b = want.get(("dagflow_task_attempts_total", ("crashy", "b", "failed")), 0)
        key = ("dagflow_task_duration_seconds_count", (("dag", "crashy"), ("task", "b")))
        assert samples[key] == ok_b + failed_b
        # and the sweeper's recovery is counted
        assert want[("dagflow_sweeper_actions_total", ("expired",))] >= 1
    finally:
        exporter.kill()
        stop_worker(first)
        if second is not None:
            stop_worker(second)


def test_a_batch_read_by_an_exporter_that_died_is_counted_once(server: RedisServer) -> None:
    # Given 100 runs started, read (not applied) by an exporter that then died
    stream = RedisEventStream(server.url(0))
    for i in range(100):
        stream.emit(
            Event(
                timestamp=now_iso(), event="dag_start", run_id=f"r{i}", dag_name="d", tenant_id="t"
            )
        )
    dead = RedisMetricsStore(server.url(0), name="dead")
    dead.setup()
    stale = [
        (e.id, [(u.op, u.field, u.amount) for u in updates(e.log, e.record or {})])
        for e in dead.read(10)
    ]
    assert len(stale) == 100
    # When another exporter takes its pending entries over and counts them
    alive = Ingester(RedisMetricsStore(server.url(0), name="alive", claim_idle_ms=0), Buckets())
    while alive.counted < 100:
        assert alive.ingest_once(block_ms=10) or alive.counted
    # and the first one comes back and applies the batch it had read
    # Then nothing is counted twice
    assert dead.apply(stale) == 0
    assert alive.store.values() == {field("dagflow_runs_started_total", "d", "t"): 100}
    assert alive.store.backlog() == 0


def test_gauges_show_active_and_pending_runs_slots_and_jobs(
    server: RedisServer, env: dict[str, str], runner: Runner, tmp_path: Path
) -> None:
    # Given a DAG that runs one at a time, three runs of it, and a scheduled job in RETRY
    worker = start_worker(env, tmp_path / "worker.log", concurrency=2)
    try:
        dag = make_dag(
            [task("nap", "test.sleep", params={"seconds": 3})],
            name="solo",
            tenant="acme",
            max_active_runs=1,
        )
        handles = [runner.submit(dag) for _ in range(3)]
        job = Job(
            id="j1",
            dag_path="x.yaml",
            tenant_id="acme",
            schedule_id="s",
            enqueued_at=time.time(),
            run_id="r",
        )
        jobs = job_store(Settings.from_env(env))
        jobs.add([job])
        jobs.update(
            "j1",
            lambda j: j.model_copy(
                update={"status": JobStatus.RETRY, "retry_at": time.time() + 60}
            ),
        )
        # When the gauges are read
        store = RedisMetricsStore(server.url(0))
        wait_for(lambda: store.gauges().runs_active.get("acme") == 1, 20, "one run active")
        gauges = store.gauges()
        # Then one run holds the DAG's only slot and two wait for it
        assert gauges.runs_pending == {("acme", "dag:solo"): 2}
        # (and the tenant's fair-by-default cap of 64 counts it too)
        assert gauges.slots_in_use == {"dag:solo": 1, "tenant:acme": 1}
        assert gauges.slots_limit == {"dag:solo": 1, "tenant:acme": 64}
        # and a pool's step slots show under kind pool, with the size the workers record
        pools = RedisPools(redis.Redis.from_url(server.url(0), decode_responses=True))
        grant = pools.acquire("warehouse", 4, handles[-1].run_id, "nap", "acme")
        assert grant.state == "granted"
        assert store.gauges().slots_in_use["pool:warehouse"] == 1
        assert store.gauges().slots_limit["pool:warehouse"] == 4
        assert gauges.jobs == {"RETRY": 1}
        assert gauges.stream_length > 0 and gauges.collector_lag_s > 0  # no collector runs
        for handle in handles:
            assert handle.wait(timeout=60).ok
        assert store.gauges().runs_active == {} and store.gauges().runs_pending == {}
    finally:
        stop_worker(worker)


def test_counting_goes_on_when_the_stream_is_deleted(server: RedisServer) -> None:
    # Given an exporter that counted one run start
    stream = RedisEventStream(server.url(0))
    start = Event(timestamp=now_iso(), event="dag_start", run_id="r", dag_name="d", tenant_id="t")
    stream.emit(start)
    ingester = Ingester(RedisMetricsStore(server.url(0)), Buckets())
    ingester.store.setup()
    while ingester.counted < 1:
        ingester.ingest_once(block_ms=10)
    # When the stream (and so its groups) is deleted, then a new event arrives
    stream.client.delete(EVENTS_STREAM)
    assert ingester.ingest_once(block_ms=10) == 0  # the group is made again, no error
    stream.emit(start)
    while ingester.counted < 2:
        ingester.ingest_once(block_ms=10)
    # Then the counts go on from where they were
    assert ingester.store.values() == {field("dagflow_runs_started_total", "d", "t"): 2}
