"""Benchmark events across hosts: the Redis event stream and the collector; prints markdown.

Not a test: run it by hand and paste the tables into ``bench/README.md``::

    python bench/bench_events.py            # full sizes, ~3 minutes
    python bench/bench_events.py --quick    # small sizes, a smoke run

It starts its own ``redis-server`` on a free port (``BENCH_REDIS=redis://host:port`` uses an
existing server instead; database 14 of it is flushed, and the byte counts then include
whatever else that server receives). It measures:

1. **Stream throughput**: ``RedisEventStream.emit`` in a loop (one round trip per event), and
   batches of events in one pipeline (what ``RedisEventStream._add`` already does for the
   scheduler's ``record_events``; dagflow has no public batch ``emit``). Then end to end: a
   ``python -m dagflow events collect`` subprocess runs, N events are appended, and the clock
   stops when the collector's file holds all N lines.
2. **Collector lag during a real run**: the layered 10 x 100 DAG of ``bench_core.py`` on a
   ``celery -A dagflow worker --pool prefork -c 2`` (``tests.support.processes``) with a
   collector subprocess running; ``dagflow.events.collector.collector_lag`` is sampled every
   :data:`SAMPLE_S`, and ``dag_done``'s stream entry time is compared with the moment the
   line appears in the file.
3. **Bytes into Redis per task** (``INFO stats total_net_input_bytes`` before and after, on
   the private server, so everything counts: worker, client, collector) on the same DAG,
   with ``DAGFLOW_EVENTS=stream`` (collector running, counted until it has caught up) and
   with ``DAGFLOW_EVENTS=file``; then one more run per mode under ``MONITOR``, by command.

Parts 2 and 3 also run :class:`ProposedCollector`, a change to the collector that exists only
here, so that the fix proposed in ``bench/README.md`` is measured before it is made.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redis_service import redis_base  # noqa: E402

REDIS_BASE = redis_base()
DB = 14
URL = f"{REDIS_BASE}/{DB}"
WORKFLOWS = "bench.bench_workflows"
#: How often the collector's lag is sampled during a run, in seconds.
SAMPLE_S = 0.05
#: How often the client looks at the collector's file, in seconds.
FILE_POLL_S = 0.002
#: The issue's target: everything Redis receives per task, with the stream on (bytes).
BYTES_TARGET = 1.5 * 3500
RUN_TIMEOUT_S = 300.0

_TMP = Path(tempfile.mkdtemp(prefix="dagflow-bench-events-"))

import redis  # noqa: E402

from bench.bench_dags import layered_tasks, make_dag, percentile  # noqa: E402
from dagflow import workflows  # noqa: E402
from dagflow.client.runner import Runner  # noqa: E402
from dagflow.clock import now_iso  # noqa: E402
from dagflow.dag.load import Dag  # noqa: E402
from dagflow.events.collector import BATCH as COLLECT_BATCH  # noqa: E402
from dagflow.events.collector import BLOCK_MS as COLLECT_BLOCK_MS  # noqa: E402
from dagflow.events.collector import CLAIM_IDLE_MS, collector_lag  # noqa: E402
from dagflow.events.collector import Collector as DagflowCollector  # noqa: E402
from dagflow.events.log import Event  # noqa: E402
from dagflow.keys import COLLECTOR_GROUP, EVENTS_STREAM  # noqa: E402
from dagflow.settings import Settings  # noqa: E402
from dagflow.stores.event_stream import EVENTS_LOG, RedisEventStream  # noqa: E402
from tests.support import processes  # noqa: E402

# --------------------------------------------------------------------------- helpers


def sample_event(i: int) -> Event:
    """A ``task_ok`` as a worker writes it (the most common event of a run)."""
    return Event(
        timestamp=now_iso(),
        event="task_ok",
        run_id=uuid.uuid4().hex,
        dag_name="layered",
        tenant_id="bench",
        task_id=f"l{i // 100 % 100:02d}_{i % 100:04d}",
        workflow_ref="bench.noop",
        attempt=1,
        duration_s=0.0012,
        worker="bench-c2-12345@host",
        fence=1,
    )


def env_for(mode: str, events: Path, state: Path) -> dict[str, str]:
    """Environment of the worker, the collector and the client's Settings."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(
        os.environ,
        DAGFLOW_BROKER_URL=URL,
        DAGFLOW_RESULT_BACKEND=URL,
        DAGFLOW_WORKFLOWS=WORKFLOWS,
        DAGFLOW_EVENTS=mode,
        ORCH_EVENTS_PATH=str(events),
        STATE_STORE_PATH=str(state),
        PYTHONPATH=path,
    )


class FileTail:
    """Counts the lines of a growing file without re-reading it; notes when lines appeared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0
        self._partial = b""
        #: ``(wall time s, line)`` of every line containing one of :attr:`watch`.
        self.seen: list[tuple[float, bytes]] = []
        self.watch: tuple[bytes, ...] = ()

    def poll(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return self.lines
        if size <= self.offset:
            return self.lines
        now = time.time()
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read(size - self.offset)
        self.offset += len(data)
        data = self._partial + data
        complete = data.rfind(b"\n") + 1
        self._partial = data[complete:]
        self.lines += data.count(b"\n", 0, complete)
        if self.watch:
            for line in data[:complete].splitlines():
                if any(w in line for w in self.watch):
                    self.seen.append((now, line))
        return self.lines

    def wait_for(self, n: int, timeout: float = 120.0) -> float:
        """Poll until the file has ``n`` lines; return the wall time (s) it did."""
        deadline = time.monotonic() + timeout
        while self.poll() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path}: {self.lines} of {n} lines after {timeout} s")
            time.sleep(FILE_POLL_S)
        return time.perf_counter()


@dataclass
class Collector:
    """A ``python -m dagflow events collect`` subprocess in its own session."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, env: dict[str, str], tag: str, client: redis.Redis, pause_s: float | None = None
    ) -> Collector:
        """Start dagflow's collector, or with ``pause_s`` the proposed one with that pause."""
        log = _TMP / f"collector-{tag}.log"
        cmd = [sys.executable, "-m", "dagflow", "events", "collect"]
        if pause_s is not None:  # on this server (BENCH_REDIS), not a private one of its own
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--collect-proposed",
                str(pause_s),
            ]
            env = dict(env, BENCH_REDIS=REDIS_BASE)
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _CHILDREN.append(proc)
        deadline = time.monotonic() + 30
        # Ready once it has read from the group under its own name (host:pid).
        name = f"{socket.gethostname()}:{proc.pid}"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"collector exited ({proc.returncode}): {log.read_text()}")
            try:
                consumers: Any = client.xinfo_consumers(EVENTS_STREAM, COLLECTOR_GROUP)
                if any(c["name"] == name for c in consumers):
                    return cls(proc, log)
            except redis.ResponseError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"collector not ready: {log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc in _CHILDREN:
            _CHILDREN.remove(self.proc)


_CHILDREN: list[subprocess.Popen[bytes]] = []
_WORKERS: list[subprocess.Popen[bytes]] = []


def start_worker(env: dict[str, str], tag: str) -> subprocess.Popen[bytes]:
    proc = processes.start_worker(
        env, _TMP / f"worker-{tag}.log", concurrency=2, app="dagflow",
        name=f"bench-events-{tag}-{os.getpid()}@%h", loglevel="info",
    )  # fmt: skip
    _WORKERS.append(proc)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    processes.stop_worker(proc, timeout=30)
    if proc in _WORKERS:
        _WORKERS.remove(proc)


def net_in(client: redis.Redis) -> int:
    return int(client.info("stats")["total_net_input_bytes"])


def wait_caught_up(client: redis.Redis, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while collector_lag(client, int(time.time() * 1000)).entries:
        if time.monotonic() > deadline:
            raise TimeoutError("collector did not catch up")
        time.sleep(0.01)


# --------------------------------------------------------------------------- 1. throughput


@dataclass
class Rate:
    what: str
    events: int
    seconds: float
    note: str = ""

    def row(self) -> str:
        return (
            f"| {self.what} | {self.events:,} | {self.seconds:.3f} "
            f"| {self.events / self.seconds:,.0f} | {self.note} |"
        )


def emit_all(stream: RedisEventStream, events: list[Event]) -> None:
    for event in events:
        stream.emit(event)


def append_batched(stream: RedisEventStream, events: list[Event], batch: int) -> None:
    # RedisEventStream has no public batch emit; _add is the pipeline emit() and
    # record_events() already use, so this is what a batch emit would cost.
    for i in range(0, len(events), batch):
        stream._add(EVENTS_LOG, [e.to_record() for e in events[i : i + batch]])


def throughput(client: redis.Redis, n: int, reps: int) -> list[str]:
    rates: dict[str, list[float]] = {}
    stream = RedisEventStream(URL)
    events = [sample_event(i) for i in range(n)]

    def timed(key: str, fn: Callable[[], None]) -> None:
        client.flushdb()
        t0 = time.perf_counter()
        fn()
        rates.setdefault(key, []).append(time.perf_counter() - t0)

    for _ in range(reps):
        timed("emit", lambda: emit_all(stream, events))
        timed("batch100", lambda: append_batched(stream, events, 100))
        timed("batch1000", lambda: append_batched(stream, events, 1000))

    e2e: dict[str, list[float]] = {}
    for rep in range(reps):
        cases: list[tuple[str, Callable[[], None]]] = [
            ("e2e emit", lambda: emit_all(stream, events)),
            ("e2e batch100", lambda: append_batched(stream, events, 100)),
        ]
        for key, fn in cases:
            client.flushdb()
            path = _TMP / f"e2e-{key.replace(' ', '-')}-{rep}.jsonl"
            env = env_for("stream", path, _TMP / f"e2e-state-{rep}.jsonl")
            collector = Collector.start(env, f"e2e-{rep}", client)
            tail = FileTail(path)
            try:
                t0 = time.perf_counter()
                fn()
                appended = time.perf_counter() - t0
                done = tail.wait_for(n)
            finally:
                collector.stop()
            e2e.setdefault(key, []).append(done - t0)
            e2e.setdefault(key + " appended", []).append(appended)
    first: Any = stream.client.xrange(EVENTS_STREAM, count=1)
    line_b = len(first[0][1]["data"])
    client.flushdb()
    stream.client.close()

    med = {k: statistics.median(v) for k, v in (rates | e2e).items()}
    rows = [
        Rate("`emit()` in a loop (one XADD round trip each)", n, med["emit"]),
        Rate("batches of 100 in one pipeline (`_add`)", n, med["batch100"]),
        Rate("batches of 1,000 in one pipeline (`_add`)", n, med["batch1000"]),
        Rate(
            "end to end: `emit()` loop -> collector -> file has all",
            n,
            med["e2e emit"],
            f"appending alone took {med['e2e emit appended']:.3f} s",
        ),
        Rate(
            "end to end: batches of 100 -> collector -> file has all",
            n,
            med["e2e batch100"],
            f"appending alone took {med['e2e batch100 appended']:.3f} s",
        ),
    ]
    return [
        f"Event stream throughput ({n:,} `task_ok` events of {line_b} B of JSON each, median of "
        f"{reps}; the collector is a `python -m dagflow events collect` subprocess started "
        "before the clock, BATCH 1,000 per read):",
        "",
        "| what | events | seconds | events/s | note |",
        "|---|---:|---:|---:|---|",
        *(r.row() for r in rows),
    ]


# --------------------------------------------------------------------------- 2. lag in a run


@dataclass
class LagRun:
    entries: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    dag_done_ms: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)


def sampler(client: redis.Redis, out: LagRun, stop: threading.Event) -> None:
    while not stop.is_set():
        lag = collector_lag(client, int(time.time() * 1000))
        out.entries.append(lag.entries)
        out.seconds.append(lag.seconds)
        stop.wait(SAMPLE_S)


def dag_done_entry_ms(client: redis.Redis, run_id: str) -> int:
    """The ms part of the stream id of the run's ``dag_done`` (Redis server time)."""
    newest: Any = client.xrevrange(EVENTS_STREAM, count=200)
    for entry_id, fields in newest:
        data = fields["data"]
        if '"dag_done"' in data and run_id in data:
            return int(str(entry_id).split("-")[0])
    raise RuntimeError(f"no dag_done for {run_id} in the stream")


def lag_during_runs(
    client: redis.Redis, runner: Runner, dag: Dag, tail: FileTail, reps: int
) -> LagRun:
    out = LagRun()
    tail.watch = (b'"dag_done"',)
    for _ in range(reps):
        wait_caught_up(client)
        tail.poll()
        tail.seen.clear()
        stop = threading.Event()
        thread = threading.Thread(target=sampler, args=(client, out, stop), daemon=True)
        thread.start()
        t0 = time.perf_counter()
        handle = runner.submit(dag)
        result = handle.wait(timeout=RUN_TIMEOUT_S)
        out.run_s.append(time.perf_counter() - t0)
        if result.status != "success":
            raise RuntimeError(f"run ended {result}")
        deadline = time.monotonic() + 30
        while not any(handle.run_id.encode() in line for _, line in tail.seen):
            if time.monotonic() > deadline:
                raise TimeoutError("dag_done never reached the file")
            tail.poll()
            time.sleep(FILE_POLL_S)
        stop.set()
        thread.join()
        seen_s = next(t for t, line in tail.seen if handle.run_id.encode() in line)
        out.dag_done_ms.append(seen_s * 1000 - dag_done_entry_ms(client, handle.run_id))
    return out


# --------------------------------------------------------------------------- 3. bytes


@dataclass
class Bytes:
    mode: str
    per_task: list[float] = field(default_factory=list)
    entries_per_task: list[float] = field(default_factory=list)
    data_b: list[float] = field(default_factory=list)


def bytes_run(client: redis.Redis, runner: Runner, dag: Dag, out: Bytes, collector: bool) -> None:
    n = len(dag.spec.tasks)
    length0 = client.xlen(EVENTS_STREAM)
    time.sleep(0.2)  # let the previous run's stragglers (sweeps, acks) land before counting
    before = net_in(client)
    result = runner.submit(dag).wait(timeout=RUN_TIMEOUT_S)
    if result.status != "success":
        raise RuntimeError(f"run ended {result}")
    if collector:
        wait_caught_up(client)
    after = net_in(client)
    out.per_task.append((after - before) / n)
    added = client.xlen(EVENTS_STREAM) - length0
    out.entries_per_task.append(added / n)
    if added:
        entries: Any = client.xrevrange(EVENTS_STREAM, count=added)
        out.data_b.append(statistics.mean(len(f["data"]) for _, f in entries))


_LINE = re.compile(rb"^\S+ \[(\d+) ([^\]]+)\] (.*)$", re.S)
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.S)
_ESC = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.S)


def _script_names() -> dict[bytes, str]:
    """sha1 -> name of dagflow's run-store scripts (EVALSHA shows only the sha)."""
    from dagflow.stores import redis_scripts

    names = ("CLAIM", "RENEW", "RETRY", "FINISH", "RELEASE", "SWEEP")
    return {
        hashlib.sha1(getattr(redis_scripts, k).encode()).hexdigest().encode(): k.lower()
        for k in names
    }


@contextmanager
def monitored(by_command: Counter[str]) -> Iterator[None]:
    """Add the RESP bytes Redis receives on database :data:`DB` to ``by_command`` (MONITOR).

    Commands a Lua script runs are not counted (Redis did not receive them); an ``EVALSHA``
    is named after dagflow's script it runs.
    """
    scripts = _script_names()
    admin = redis.Redis.from_url(URL)
    marker = f"bench-marker-{uuid.uuid4().hex}".encode()
    mon: Any = redis.Redis.from_url(URL).monitor()  # type: ignore[no-untyped-call]
    mon.__enter__()
    conn = mon.connection
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while True:
                m = _LINE.match(conn.read_response())
                if not m or int(m.group(1)) != DB or m.group(2) == b"lua":
                    continue
                args = _ARG.findall(m.group(3))
                if not args:
                    continue
                if args[0].upper() == b"ECHO" and len(args) > 1 and args[1] == marker:
                    return
                lens = [len(_ESC.sub(b"_", a)) for a in args]
                resp = len(f"*{len(args)}\r\n") + sum(len(f"${n}\r\n") + n + 2 for n in lens)
                name = args[0].upper().decode()
                if name == "EVALSHA" and len(args) > 1:
                    name += " " + scripts.get(args[1], "?")
                by_command[name] += resp
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(0.05)
    try:
        yield
    finally:
        admin.echo(marker)
        thread.join(120)
        mon.__exit__(None, None, None)
        admin.close()
        if errors:
            raise RuntimeError(f"MONITOR reader failed: {errors[0]!r}")


def monitor_run(client: redis.Redis, runner: Runner, dag: Dag, collector: bool) -> Counter[str]:
    """Bytes per task by command for one run (an extra, untimed run under MONITOR)."""
    counts: Counter[str] = Counter()
    with monitored(counts):
        if runner.submit(dag).wait(timeout=RUN_TIMEOUT_S).status != "success":
            raise RuntimeError("monitored run failed")
        if collector:
            wait_caught_up(client)
    n = len(dag.spec.tasks)
    return Counter({k: v / n for k, v in counts.items()})


def breakdown_rows(columns: list[tuple[str, Counter[str]]]) -> list[str]:
    """Bytes per task by command, one column per mode, the largest first; the last column is
    the baseline the first is compared with."""
    names = [name for name, _ in columns]
    first, base = columns[0][1], columns[-1][1]
    rows = [
        "| command | "
        + " | ".join(f"{n} B/task" for n in names)
        + f" | {names[0]} - {names[-1]} |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    keys = sorted(
        set().union(*(c for _, c in columns)), key=lambda k: -max(c[k] for _, c in columns)
    )
    for k in keys:
        if max(c[k] for _, c in columns) < 5:
            continue
        cells = " | ".join(f"{c[k]:,.0f}" for _, c in columns)
        rows.append(f"| {k} | {cells} | {first[k] - base[k]:+,.0f} |")
    totals = [sum(c.values()) for _, c in columns]
    cells = " | ".join(f"{t:,.0f}" for t in totals)
    rows.append(f"| **total** | {cells} | {totals[0] - totals[-1]:+,.0f} |")
    return rows


# --------------------------------------------------------------------------- proposal

#: The proposed collector waits this long after a short batch before reading again (s).
PROPOSED_PAUSE_S = 0.1
RECOVERY_ONLY = "stream, proposed: recovery only"
PROPOSED = f"stream, proposed: recovery + {PROPOSED_PAUSE_S * 1000:.0f} ms pause"


class ProposedCollector(DagflowCollector):
    """The fix proposed for ``dagflow.events.collector.Collector``, measured here before it is made.

    ``Collector.collect_once`` sends ``XREADGROUP <group> 0`` (its own pending entries) and
    ``XAUTOCLAIM`` before every ``XREADGROUP >``; while workers run, the collector wakes for
    almost every entry, so three commands (~380 B) and an ``XACK`` go to Redis per entry. This
    variant looks for pending and abandoned entries only at start, after an error and every
    ``CLAIM_IDLE_MS / 2``, and after a batch shorter than ``BATCH`` waits
    :data:`PROPOSED_PAUSE_S` so that entries arrive in batches (adding at most that to the lag).
    """

    def __init__(self, *args: Any, pause_s: float = PROPOSED_PAUSE_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause_s = pause_s
        self._recover_at = 0.0

    def collect_once(self, block_ms: int = COLLECT_BLOCK_MS) -> int:
        now = time.monotonic()
        if now >= self._recover_at:
            entries = self._read("0", 0) or self._autoclaim()
            self._recover_at = now + CLAIM_IDLE_MS / 2000  # only once both calls succeeded
            if entries:
                self._load_seen()
                return self._write(entries)
        try:
            handled = self._write(self._read(">", block_ms))
        except (redis.RedisError, OSError):
            self._recover_at = 0.0  # what was read but not acknowledged is pending: re-read it
            raise
        if self.pause_s and 0 < handled < COLLECT_BATCH:
            time.sleep(self.pause_s)
        return handled


def collect_proposed(pause_s: float) -> int:
    """Run :class:`ProposedCollector` like ``dagflow events collect``, until SIGTERM."""
    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.require_redis_url(), decode_responses=True)
    collector = ProposedCollector(
        client, settings.events_path, settings.state_path, pause_s=pause_s
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector.run(stop)
    shutil.rmtree(_TMP, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- main


MODEL_CMD = "lscpu | grep 'Model name' | sed 's/.*: *//'"


def machine(client: redis.Redis) -> list[str]:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    import celery
    import kombu

    return [
        f"- CPU: {sh('nproc')} cores, {sh(MODEL_CMD)}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Python {platform.python_version()}, celery {celery.__version__}, kombu "
        f"{kombu.__version__}, redis-py {redis.__version__}, redis-server "
        f"{client.info('server')['redis_version']}",
        f"- {platform.platform()}; {time.strftime('%Y-%m-%d %H:%M %Z')}",
    ]


@dataclass(frozen=True)
class Sizes:
    events: int
    levels: int
    width: int
    reps: int


FULL = Sizes(20_000, 10, 100, 3)
QUICK = Sizes(2_000, 4, 20, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--collect-proposed", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.collect_proposed is not None:
        return collect_proposed(args.collect_proposed)
    sz = QUICK if args.quick else FULL
    client = redis.Redis.from_url(URL, decode_responses=True)
    client.flushdb()
    started = time.perf_counter()
    out = ["Machine:", "", *machine(client), ""]
    try:
        print("[bench] stream throughput ...", file=sys.stderr)
        out += throughput(client, sz.events, sz.reps)

        dag = make_dag(layered_tasks(sz.levels, sz.width, 3), "layered")
        n = len(dag.spec.tasks)
        label = f"layered {sz.levels} x {sz.width} (3 parents each)"

        print("[bench] stream mode: worker + collector ...", file=sys.stderr)
        client.flushdb()
        events = _TMP / "stream-events.jsonl"
        env = env_for("stream", events, _TMP / "stream-state.jsonl")
        settings = Settings.from_env(env)
        workflows.load(settings.workflow_modules)
        worker = start_worker(env, "stream")
        runner = Runner(settings)
        runner.submit(make_dag(layered_tasks(2, 4, 2), "warmup")).wait(timeout=60)
        phases: dict[str, tuple[LagRun, Bytes, Counter[str]]] = {}
        kinds = {"stream": None, RECOVERY_ONLY: 0.0, PROPOSED: PROPOSED_PAUSE_S}
        for kind, pause_s in kinds.items():
            collector = Collector.start(env, kind, client, pause_s=pause_s)
            tail = FileTail(events)
            lag = lag_during_runs(client, runner, dag, tail, sz.reps)
            stream_bytes = Bytes(kind)
            for _ in range(sz.reps):
                bytes_run(client, runner, dag, stream_bytes, collector=True)
            phases[kind] = (lag, stream_bytes, monitor_run(client, runner, dag, collector=True))
            collector.stop()
        stop_worker(worker)

        print("[bench] file mode: worker ...", file=sys.stderr)
        client.flushdb()
        env = env_for("file", _TMP / "file-events.jsonl", _TMP / "file-state.jsonl")
        file_runner = Runner(Settings.from_env(env))
        worker = start_worker(env, "file")
        file_runner.submit(make_dag(layered_tasks(2, 4, 2), "warmup")).wait(timeout=60)
        file_bytes = Bytes("file")
        for _ in range(sz.reps):
            bytes_run(client, file_runner, dag, file_bytes, collector=False)
        file_cmds = monitor_run(client, file_runner, dag, collector=False)
        stop_worker(worker)

        # ----- report
        lag = phases["stream"][0]
        out += [
            "",
            f"Collector lag while the {label} DAG runs ({n:,} no-op tasks; `celery -A dagflow "
            f"worker --pool prefork -c 2`; a collector subprocess; `collector_lag` sampled every "
            f"{SAMPLE_S * 1000:.0f} ms; {sz.reps} runs per collector, samples pooled; run "
            f"time median {statistics.median(lag.run_s):.2f} s). 'recovery only' and "
            "'recovery + pause' are the collector change proposed below, measured here, not "
            "dagflow's (pending and abandoned entries looked for at start, after an error and "
            f"every {CLAIM_IDLE_MS / 2000:g} s; then optionally a {PROPOSED_PAUSE_S * 1000:.0f} ms "
            "pause after a short batch):",
            "",
            "| collector | samples | entries behind p50 / p99 / max | oldest unwritten s "
            "p50 / p99 / max | `dag_done` stream -> file ms, median (runs) |",
            "|---|---:|---|---|---|",
        ]
        for kind, (lag, _, _) in phases.items():
            out.append(
                f"| {'dagflow' if kind == 'stream' else kind[18:]} | {len(lag.entries)} "
                f"| {percentile(lag.entries, 50):.0f} / {percentile(lag.entries, 99):.0f} / "
                f"{max(lag.entries)} | {percentile(lag.seconds, 50):.3f} / "
                f"{percentile(lag.seconds, 99):.3f} / {max(lag.seconds):.3f} "
                f"| {statistics.median(lag.dag_done_ms):.0f} ("
                + ", ".join(f"{x:.0f}" for x in lag.dag_done_ms)
                + ") |"
            )
        out += [
            "",
            f"Bytes into Redis per task, {label}, `INFO total_net_input_bytes` delta on the "
            "private server (worker, client and collector all counted; the stream mode counts "
            f"until the collector has caught up), median of {sz.reps}:",
            "",
            "| DAGFLOW_EVENTS | B/task into Redis (runs) | stream entries/task | mean event JSON B "
            f"| target <= {BYTES_TARGET:,.0f} B |",
            "|---|---:|---:|---:|---|",
        ]
        for b in (*(p[1] for p in phases.values()), file_bytes):
            med = statistics.median(b.per_task)
            runs = ", ".join(f"{x:,.0f}" for x in b.per_task)
            data = f"{statistics.median(b.data_b):.0f}" if b.data_b else "n/a"
            verdict = "met" if med <= BYTES_TARGET else f"MISSED by {med - BYTES_TARGET:,.0f} B"
            out.append(
                f"| {b.mode} | {med:,.0f} ({runs}) | {statistics.median(b.entries_per_task):.2f} "
                f"| {data} | {verdict if b.mode != 'file' else 'n/a'} |"
            )
        file_med = statistics.median(file_bytes.per_task)
        diff = statistics.median(phases["stream"][1].per_task) - file_med
        out += [
            "",
            f"The stream costs {diff:,.0f} B per task into Redis over the file mode. Where the "
            "bytes go, by command (one more run per mode under `MONITOR`, database "
            f"{DB} only, RESP bytes received; `EVALSHA <name>` is dagflow's run-store script):",
            "",
            *breakdown_rows(
                [
                    ("stream", phases["stream"][2]),
                    ("recovery only", phases[RECOVERY_ONLY][2]),
                    ("+ pause", phases[PROPOSED][2]),
                    ("file", file_cmds),
                ]
            ),
            "",
            f"Total benchmark time: {time.perf_counter() - started:.0f} s; load average at the "
            f"end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        ]
        print("\n".join(out))
        return 0
    finally:
        for proc in list(_WORKERS):
            stop_worker(proc)
        for proc in list(_CHILDREN):
            Collector(proc, Path()).stop()
        client.flushdb()
        client.close()
        shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
