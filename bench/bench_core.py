"""Benchmark dagflow against raw Celery on the same Redis and the same worker; prints markdown.

Not a test: run it by hand and paste the tables into ``bench/README.md``::

    python bench/bench_core.py            # full sizes, ~3-5 minutes
    python bench/bench_core.py --quick    # small sizes, a smoke run (~1 minute)

It starts its own ``redis-server`` on a free port (``BENCH_REDIS=redis://host:port`` uses
an existing server instead; database 12 of it is flushed).

One worker process (``python -m celery -A bench.bench_app worker --pool prefork -c 2``,
started and stopped by ``tests.support.processes``, as the tests do) holds both
``dagflow.step`` and the raw baseline tasks, so both engines run on the same processes,
the same Redis database (12, flushed before and after) and the same ``celeryconfig``.
Shapes (no-op tasks, full sizes):

* chain of 100 (dagflow) vs a raw ``chain`` of 100;
* fan-out/fan-in: root -> 1,000 -> sink (dagflow) vs a raw ``chord`` of 1,000 + body;
* layered 10 levels x 100, each task with 3 random parents in the level above (dagflow)
  vs a raw chain of 10 chords x 100 (Celery's only way to express it without duplicates);
* random DAG of 500 tasks with shared parents (dagflow; Celery has no canvas for it);
* each shape also against a raw flat ``group`` of the same number of tasks (with results).

Bytes are counted on a separate pass with Redis ``MONITOR`` filtered to database 12 (so
other users of the server do not count), as RESP bytes received by Redis, by category.
Makespan runs ``bench.sleep`` tasks on a second worker with enough processes for the DAG's
width and compares the run's wall time with the critical path. Plan timing runs
``dagflow plan`` on a generated 10,000-task DAG as a subprocess and in-process, by stage.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redis_service import redis_base  # noqa: E402

#: A private redis-server started for this run, or the server ``BENCH_REDIS`` names.
REDIS_BASE = redis_base()
DB = 12
BROKER = f"{REDIS_BASE}/{DB}"
WORKFLOWS = "bench.bench_workflows"
RUN_TIMEOUT_S = 300.0
#: The raw chain of chords is skipped if it does not finish in this many seconds.
CHAIN_OF_CHORDS_LIMIT_S = 60.0
#: How often the client looks for a raw baseline's results, in seconds.
POLL_S = 0.002

_TMP = Path(tempfile.mkdtemp(prefix="dagflow-bench-"))
os.environ.update(
    DAGFLOW_BROKER_URL=BROKER,
    DAGFLOW_RESULT_BACKEND=BROKER,
    DAGFLOW_WORKFLOWS=WORKFLOWS,
    ORCH_EVENTS_PATH=str(_TMP / "events.jsonl"),
    STATE_STORE_PATH=str(_TMP / "state.jsonl"),
)

import redis  # noqa: E402
from celery import chain, chord, group  # noqa: E402

from bench.bench_dags import (  # noqa: E402
    chain_tasks,
    edges,
    fan_tasks,
    layered_tasks,
    make_dag,
    percentile,
    random_levels_tasks,
    random_tasks,
)
from bench.bench_workflows import RAW_MERGE, RAW_NOOP, RAW_SLEEP, register_raw  # noqa: E402
from dagflow import workflows  # noqa: E402
from dagflow.client.runner import Runner  # noqa: E402
from dagflow.dag.load import Dag, load_dag, plan_text  # noqa: E402
from dagflow.dag.spec import parse_dag, read_yaml  # noqa: E402
from dagflow.settings import Settings  # noqa: E402
from tests.support import processes  # noqa: E402

# --------------------------------------------------------------------------- workers


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    concurrency: int

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


def start_worker(concurrency: int, tag: str) -> Worker:
    """Start ``celery -A bench.bench_app worker`` on database 12 and wait until it consumes."""
    log = _TMP / f"worker-{tag}.log"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = processes.start_worker(
        dict(os.environ, PYTHONPATH=path),
        log,
        concurrency=concurrency,
        name=f"bench-{tag}-{os.getpid()}@%h",
        app="bench.bench_app",
        loglevel="warning",
    )
    _WORKERS.append(proc)
    return Worker(proc, log, concurrency)


_WORKERS: list[subprocess.Popen[bytes]] = []


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM to its process group), then kill the group if it lingers."""
    processes.stop_worker(proc, timeout=30)
    if proc in _WORKERS:
        _WORKERS.remove(proc)


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)
    #: CPU seconds used during the samples, summed over them, by process group.
    cpu: Counter[str] = field(default_factory=Counter)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median."""
        return (max(self.samples) - min(self.samples)) / self.median if self.samples else 0.0


class Bench:
    """The client side: a dagflow Runner and the same Celery app for the raw canvases."""

    def __init__(self) -> None:
        settings = Settings.from_env()
        workflows.load(settings.workflow_modules)
        self.runner = Runner(settings)
        self.app = self.runner.app
        register_raw(self.app)
        self.noop = self.app.signature(RAW_NOOP, immutable=True)
        self.merge = self.app.signature(RAW_MERGE)
        self.poll = redis.Redis.from_url(BROKER)
        self.last_run_id = ""

    # dagflow -----------------------------------------------------------------
    def dagflow(self, dag: Dag, expect: int | None = None) -> float:
        """Run ``dag`` and return its wall time; ``expect``: tasks that end ``ok`` when it
        is not the DAG's task count (a mapped DAG's instances count too)."""
        n = expect if expect is not None else len(dag.spec.tasks)
        t0 = time.perf_counter()
        handle = self.runner.submit(dag)
        result = handle.wait(timeout=RUN_TIMEOUT_S)
        dt = time.perf_counter() - t0
        if result.status != "success" or result.succeeded != n:
            raise RuntimeError(f"dagflow run of {dag.name} ended {result}")
        self.last_run_id = handle.run_id
        return dt

    # raw Celery --------------------------------------------------------------
    # The client waits by polling the result keys every POLL_S: GroupResult.get() sleeps in
    # 0.5 s intervals and subscribes to every task's channel, which here added ~0.5 s per
    # call and ~50% client CPU on a 1,000-task group. Polling is the strongest baseline.
    def _wait(self, ids: list[str], timeout: float = RUN_TIMEOUT_S) -> None:
        keys = [f"celery-task-meta-{i}" for i in ids]
        deadline = time.monotonic() + timeout
        while not (self.poll.exists(keys[-1]) and self.poll.exists(*keys) == len(keys)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(keys)} raw results not ready after {timeout} s")
            time.sleep(POLL_S)

    def _check(self, task_id: str, expected: Any) -> None:
        meta = self.app.backend.get_task_meta(task_id)
        if meta["status"] != "SUCCESS" or (expected is not None and meta["result"] != expected):
            raise RuntimeError(f"raw baseline ended {meta}")

    def raw_group(self, n: int) -> float:
        t0 = time.perf_counter()
        res = group(self.noop.clone() for _ in range(n)).apply_async()
        self._wait([r.id for r in res.results])
        dt = time.perf_counter() - t0
        self._check(res.results[-1].id, {"ok": 1})
        return dt

    def raw_chain(self, n: int) -> float:
        t0 = time.perf_counter()
        res = chain(*(self.noop.clone() for _ in range(n))).apply_async()
        self._wait([res.id])
        dt = time.perf_counter() - t0
        self._check(res.id, {"ok": 1})
        return dt

    def raw_chord(self, n: int) -> float:
        t0 = time.perf_counter()
        res = chord(group(self.noop.clone() for _ in range(n)), self.merge.clone()).apply_async()
        self._wait([res.id])
        dt = time.perf_counter() - t0
        self._check(res.id, {"n": n})
        return dt

    def raw_chain_of_chords(
        self, levels: int, width: int, timeout: float, sleep_s: float = 0.0
    ) -> float | None:
        if sleep_s:
            head = self.app.signature(RAW_SLEEP, kwargs={"s": sleep_s}, immutable=True)
        else:
            head = self.noop
        canvas = chain(
            *(chord(group(head.clone() for _ in range(width)), self.merge.clone())
              for _ in range(levels))
        )  # fmt: skip
        t0 = time.perf_counter()
        res = canvas.apply_async()
        try:
            self._wait([res.id], timeout)
        except TimeoutError as exc:
            print(f"  raw chain of chords {levels}x{width}: gave up: {exc}", file=sys.stderr)
            return None
        dt = time.perf_counter() - t0
        self._check(res.id, {"n": width})
        self.release_pending()
        return dt

    def release_pending(self) -> None:
        """Forget the results a chord left pending in the client (Celery keeps them until
        they are waited on; otherwise their ``__del__`` unsubscribes during interpreter exit)."""
        backend = self.app.backend
        for mapping in getattr(backend, "_pending_results", ()):
            for waiters in list(mapping.values()):
                for result in list(waiters.values()):
                    backend.remove_pending_result(result)

    def purge(self) -> None:
        """Drop every waiting message (after a baseline was abandoned)."""
        self.app.control.purge()


CPU_GROUPS = ("worker main", "worker children", "redis", "client")


def _proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 if it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used so far by the worker's main process, its children, Redis and us."""

    def __init__(self, worker: Worker, redis_pid: int) -> None:
        self.main = worker.proc.pid
        self.children = worker.child_pids()
        self.redis_pid = redis_pid

    def read(self) -> dict[str, float]:
        return {
            "worker main": _proc_cpu(self.main),
            "worker children": sum(_proc_cpu(p) for p in self.children),
            "redis": _proc_cpu(self.redis_pid),
            "client": sum(os.times()[:2]),
        }


def _timed(fn: Callable[[], float | None], t: Timing, meter: CpuMeter | None) -> bool:
    before = meter.read() if meter else {}
    v = fn()
    if v is None:
        return False
    t.samples.append(v)
    if meter:
        for k, c in meter.read().items():
            t.cpu[k] += c - before[k]
    return True


def measure(
    fn: Callable[[], float | None], reps: int, meter: CpuMeter | None = None
) -> Timing | None:
    t = Timing()
    for _ in range(reps):
        if not _timed(fn, t, meter):
            return None
    return t


def interleaved(
    fns: dict[str, Callable[[], float | None]], reps: int, meter: CpuMeter | None = None
) -> dict[str, Timing | None]:
    """Run each function ``reps`` times, alternating between them so drift hits all alike."""
    out: dict[str, Timing | None] = {k: Timing() for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = out[k]
            if t is not None and not _timed(fn, t, meter):
                out[k] = None
    return out


# --------------------------------------------------------------------------- bytes (MONITOR)

_LINE = re.compile(rb"^\S+ \[(\d+) ([^\]]+)\] (.*)$", re.S)
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.S)
_ESC = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.S)

CATEGORIES = ("queue msgs", "qos (unacked)", "events", "results", "run store", "other")


def _arg_len(escaped: bytes) -> int:
    return len(_ESC.sub(b"_", escaped))


def _category(args: list[bytes]) -> str:
    cmd = args[0].upper()
    key = args[1] if len(args) > 1 else b""
    if cmd in (b"EVALSHA", b"EVAL") and len(args) > 3:
        key = args[3]
    if key.startswith(b"dagflow:"):
        return "run store"
    if b"unacked" in key:
        return "qos (unacked)"
    if cmd == b"PUBLISH" and b"celeryev" in key:
        return "events"
    if b"celery-task-meta" in key or b"celery-taskset-meta" in key or b"chord-unlock" in key:
        return "results"
    if cmd in (b"LPUSH", b"RPUSH") and not key.startswith(b"_kombu"):
        return "queue msgs"
    return "other"


@dataclass
class Traffic:
    """RESP bytes and commands Redis received on database 12, by category."""

    bytes: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    by_command: Counter[str] = field(default_factory=Counter)
    msg_sizes: list[int] = field(default_factory=list)
    server_wide_in: int = 0

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


@contextmanager
def monitored() -> Iterator[Traffic]:
    """Count what Redis receives on database 12 while the block runs (MONITOR)."""
    traffic = Traffic()
    admin = redis.Redis.from_url(BROKER)
    marker = f"bench-marker-{uuid.uuid4().hex}".encode()
    mon = redis.Redis.from_url(BROKER).monitor()
    mon.__enter__()
    conn = mon.connection
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while True:
                raw = conn.read_response()
                m = _LINE.match(raw)
                if not m or int(m.group(1)) != DB or m.group(2) == b"lua":
                    continue
                args = _ARG.findall(m.group(3))
                if not args:
                    continue
                if args[0].upper() == b"ECHO" and len(args) > 1 and args[1] == marker:
                    return
                lens = [_arg_len(a) for a in args]
                resp = len(f"*{len(args)}\r\n") + sum(len(f"${n}\r\n") + n + 2 for n in lens)
                cat = _category(args)
                traffic.bytes[cat] += resp
                traffic.commands[cat] += 1
                traffic.by_command[args[0].upper().decode()] += 1
                if cat == "queue msgs":
                    traffic.msg_sizes += lens[2:]
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(0.05)
    before = int(admin.info("stats")["total_net_input_bytes"])
    try:
        yield traffic
    finally:
        traffic.server_wide_in = int(admin.info("stats")["total_net_input_bytes"]) - before
        admin.echo(marker)
        thread.join(120)
        mon.__exit__(None, None, None)
        admin.close()
        if errors:
            raise RuntimeError(f"MONITOR reader failed: {errors[0]!r}")


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    shape: str
    engine: str
    tasks: int
    timing: Timing | None
    group: Timing | None = None  # raw flat group of the same number of tasks
    hops: int = 0
    traffic: Traffic | None = None

    @property
    def rate(self) -> float | None:
        return self.tasks / self.timing.median if self.timing else None

    @property
    def vs_group(self) -> float | None:
        if not self.timing or not self.group:
            return None
        return self.group.median / self.timing.median

    def cpu_ms(self, group: str | None = None) -> float | None:
        """CPU milliseconds per task (one process group, or all)."""
        if not self.timing or not self.timing.cpu:
            return None
        used = self.timing.cpu[group] if group else sum(self.timing.cpu.values())
        return used / (len(self.timing.samples) * self.tasks) * 1000

    @property
    def per_hop_ms(self) -> float | None:
        return self.timing.median / self.hops * 1000 if self.timing and self.hops else None


def _f(v: float | None, fmt: str = "{:.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def table_rows(rows: list[Row]) -> list[str]:
    out = [
        "| shape | engine | tasks | time s (spread) | tasks/s | vs flat group | per hop ms "
        "| B/task into Redis | of which queue msgs | msg B | Redis cmds/task |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tr = r.traffic
        t = (
            "did not finish"
            if r.timing is None
            else (f"{r.timing.median:.3f} ({r.timing.spread:.0%})")
        )
        msg = f"{statistics.mean(tr.msg_sizes):,.0f}" if tr and tr.msg_sizes else "n/a"
        if tr and tr.msg_sizes and max(tr.msg_sizes) > 1.5 * statistics.mean(tr.msg_sizes):
            msg += f" (max {max(tr.msg_sizes):,})"
        out.append(
            f"| {r.shape} | {r.engine} | {r.tasks:,} | {t} | {_f(r.rate)} "
            f"| {_f(r.vs_group, '{:.2f}x')} | {_f(r.per_hop_ms, '{:.2f}')} "
            f"| {_f(tr.total / r.tasks if tr else None, '{:,.0f}')} "
            f"| {_f(tr.bytes['queue msgs'] / r.tasks if tr else None, '{:,.0f}')} "
            f"| {msg} | {_f(sum(tr.commands.values()) / r.tasks if tr else None, '{:.1f}')} |"
        )
    return out


def cpu_rows(rows: list[Row]) -> list[str]:
    out = [
        "| shape | engine | " + " | ".join(CPU_GROUPS) + " | total CPU ms/task | cores busy |",
        "|---|---|" + "---:|" * (len(CPU_GROUPS) + 2),
    ]
    for r in rows:
        total = r.cpu_ms()
        if total is None or not r.timing:
            continue
        cells = " | ".join(f"{r.cpu_ms(g):.2f}" for g in CPU_GROUPS)
        busy = total * r.tasks / 1000 / statistics.mean(r.timing.samples)
        out.append(f"| {r.shape} | {r.engine} | {cells} | {total:.2f} | {busy:.2f} |")
    return out


def traffic_rows(rows: list[Row]) -> list[str]:
    out = [
        "| shape | engine | "
        + " | ".join(CATEGORIES)
        + " | total B/task | server-wide in B/task |",
        "|---|---|" + "---:|" * (len(CATEGORIES) + 2),
    ]
    for r in rows:
        tr = r.traffic
        if tr is None:
            continue
        cells = " | ".join(f"{tr.bytes[c] / r.tasks:,.0f}" for c in CATEGORIES)
        out.append(
            f"| {r.shape} | {r.engine} | {cells} | {tr.total / r.tasks:,.0f} "
            f"| {tr.server_wide_in / r.tasks:,.0f} |"
        )
    return out


def command_rows(rows: list[Row]) -> list[str]:
    out = ["| shape | engine | Redis commands per task (top 8) |", "|---|---|---|"]
    for r in rows:
        if r.traffic is None:
            continue
        top = ", ".join(f"{c} {n / r.tasks:.2f}" for c, n in r.traffic.by_command.most_common(8))
        out.append(f"| {r.shape} | {r.engine} | {top} |")
    return out


MODEL_CMD = "lscpu | grep 'Model name' | sed 's/.*: *//'"


def machine() -> list[str]:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    import celery
    import kombu

    info = redis.Redis.from_url(BROKER).info("server")
    settings = Settings.from_env()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    return [
        f"- CPU: {sh('nproc')} cores, {sh(MODEL_CMD)}",
        f"- memory: {mem} GiB; load average at start: {os.getloadavg()[0]:.2f}",
        f"- Python {platform.python_version()}, celery {celery.__version__}, kombu "
        f"{kombu.__version__}, redis-py {redis.__version__}, redis-server {info['redis_version']}",
        f"- {platform.platform()}",
        f"- dagflow leases on: DAGFLOW_LEASE_S={settings.lease_s:g}, "
        f"DAGFLOW_SWEEP_S={settings.sweep_s:g} (heartbeat every {settings.lease_s / 3:g} s)",
    ]


# --------------------------------------------------------------------------- hop latency


def _event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def hop_latencies_ms(
    events: Iterable[dict[str, Any]], run_id: str, order: list[str]
) -> list[float]:
    """Each hop of a chain: the child's ``task_start`` minus its parent's ``task_ok``, in ms.

    Read from dagflow's own events (the Redis stream in the default distributed mode; both
    stamps are written by worker processes on this machine, with microseconds).
    """
    ok: dict[str, float] = {}
    start: dict[str, float] = {}
    for e in events:
        if e.get("run_id") != run_id:
            continue
        if e["event"] == "task_ok":
            ok[e["task_id"]] = _event_time(e)
        elif e["event"] == "task_start":
            start.setdefault(e["task_id"], _event_time(e))
    return [(start[c] - ok[p]) * 1000 for p, c in itertools.pairwise(order)]


#: Targets for one hop (child start - parent ok), in milliseconds.
HOP_P50_TARGET_MS = 1.5
HOP_P99_TARGET_MS = 10.0


def measure_hops(bench: Bench, n: int, runs: int) -> tuple[list[str], list[float]]:
    """Run a dagflow chain of ``n`` no-op tasks ``runs`` times; return table rows and hops."""
    dag = make_dag(chain_tasks(n), f"hop_chain_{n}")
    order = [t.id for t in dag.spec.tasks]
    hops: list[float] = []
    per_run: list[float] = []
    for _ in range(runs):
        bench.dagflow(dag)
        these = hop_latencies_ms(bench.runner.runtime.events.read(), bench.last_run_id, order)
        per_run.append(statistics.median(these))
        hops += these
    p50, p90, p99 = (percentile(hops, q) for q in (50, 90, 99))
    rows = [
        f"Hop latency on a dagflow chain of {n} no-op tasks (child `task_start` - parent "
        f"`task_ok`, from the event log; worker prefork -c 2; {runs} runs, {len(hops)} hops "
        f"pooled; per-run p50 {min(per_run):.2f}-{max(per_run):.2f} ms):",
        "",
        "| p50 ms | p90 ms | p99 ms | max ms | mean ms | target p50 | target p99 |",
        "|---:|---:|---:|---:|---:|---|---|",
        f"| {p50:.2f} | {p90:.2f} | {p99:.2f} | {max(hops):.2f} | {statistics.mean(hops):.2f} "
        f"| <= {HOP_P50_TARGET_MS} ms: {'met' if p50 <= HOP_P50_TARGET_MS else 'MISSED'} "
        f"| <= {HOP_P99_TARGET_MS:.0f} ms: {'met' if p99 <= HOP_P99_TARGET_MS else 'MISSED'} |",
    ]
    return rows, hops


# --------------------------------------------------------------------------- plan timing


def write_big_dag(path: Path, n: int, seed: int = 4) -> None:
    """A random ``n``-task DAG YAML (1..3 parents among the 200 tasks before each)."""
    tasks = random_tasks(n, seed=seed, window=200)
    lines = ["name: big_random", "tenant_id: bench", "tasks:"]
    for t in tasks:
        lines.append(f"  - id: {t['id']}")
        lines.append(f"    workflow_ref: {t['workflow_ref']}")
        lines.append(f"    depends_on: [{', '.join(t['depends_on'])}]")
    path.write_text("\n".join(lines) + "\n")


def time_plan(n: int, reps: int) -> tuple[list[str], float]:
    path = _TMP / f"big_{n}.yaml"
    write_big_dag(path, n)
    exe = shutil.which("dagflow")
    cmd = [exe, "plan", str(path)] if exe else [sys.executable, "-m", "dagflow", "plan", str(path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    whole, startup = Timing(), Timing()
    for _ in range(reps):
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL).returncode
        whole.samples.append(time.perf_counter() - t0)
        if rc != 0:
            raise RuntimeError(f"{cmd} exited {rc}")
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import dagflow.cli, dagflow.dag.load"], cwd=ROOT, env=env
        )
        startup.samples.append(time.perf_counter() - t0)

    import yaml

    from dagflow.dag.compile import compile_dag
    from dagflow.dag.graph import build_graph

    stages: dict[str, Timing] = {k: Timing() for k in (
        "read_yaml (C safe loader, GC paused)", "parse_dag (pydantic)", "build_graph",
        "compile_dag", "plan_text", "load_dag + plan_text (in-process total)",
        "for comparison: C safe loader, GC on")}  # fmt: skip
    text = path.read_text()
    for _ in range(reps):
        t0 = time.perf_counter()
        data = read_yaml(path)
        t1 = time.perf_counter()
        spec = parse_dag(data, source=str(path))
        t2 = time.perf_counter()
        graph = build_graph(spec, source=str(path), workflows=workflows.names())
        t3 = time.perf_counter()
        compiled = compile_dag(spec, graph)
        t4 = time.perf_counter()
        plan_text(Dag(source=str(path), spec=spec, compiled=compiled))
        t5 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=False):
            stages[k].samples.append(v)
        t0 = time.perf_counter()
        plan_text(load_dag(path))
        stages["load_dag + plan_text (in-process total)"].samples.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        yaml.load(text, Loader=yaml.CSafeLoader)  # the safe loader, in C
        stages["for comparison: C safe loader, GC on"].samples.append(time.perf_counter() - t0)
    n_edges = edges(random_tasks(n, seed=4, window=200))
    out = [
        f"`dagflow plan` on a generated {n:,}-task random DAG ({n_edges:,} edges, "
        f"{path.stat().st_size / 1e6:.1f} MB of YAML), median of {reps}:",
        "",
        "| what | seconds | target |",
        "|---|---:|---|",
        f"| `dagflow plan` as a subprocess (whole command) | {whole.median:.3f} | < 1 s: "
        f"{'met' if whole.median < 1 else f'MISSED by {whole.median - 1:.2f} s'} |",
        "| of which interpreter start + `import dagflow.cli, dagflow.dag.load` "
        f"| {startup.median:.3f} | |",
    ]
    out += [f"| {k} | {t.median:.3f} | |" for k, t in stages.items()]
    return out, whole.median


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Sizes:
    chain: int
    fan: int
    levels: int
    width: int
    parents: int
    random: int
    coc_levels: int
    coc_width: int
    sleep_levels: int
    sleep_width: int
    sleep_s: float
    sleep_concurrency: int
    plan_tasks: int
    reps: int
    hop_chain: int


FULL = Sizes(100, 1000, 10, 100, 3, 500, 10, 100, 10, 10, 0.2, 10, 10_000, 5, 300)
QUICK = Sizes(20, 100, 4, 20, 3, 100, 3, 20, 4, 4, 0.1, 4, 1_000, 1, 60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per timing")
    parser.add_argument("--skip-bytes", action="store_true", help="no MONITOR pass")
    args = parser.parse_args(argv)
    sz = QUICK if args.quick else FULL
    reps = args.reps or sz.reps
    admin = redis.Redis.from_url(BROKER)
    admin.flushdb()
    started = time.perf_counter()
    out: list[str] = []
    try:
        out += ["Machine:", "", *machine(), ""]
        bench = Bench()
        worker = start_worker(2, "c2")
        # Warm up: every process imports, connects and parses a plan once.
        for _ in range(2):
            bench.dagflow(make_dag(fan_tasks(8), "warmup"))
            bench.raw_group(20)
            bench.raw_chord(8)
            bench.raw_chain(4)

        meter = CpuMeter(worker, int(admin.info("server")["process_id"]))
        dags = {
            "chain": make_dag(chain_tasks(sz.chain), "chain"),
            "fan": make_dag(fan_tasks(sz.fan), "fan"),
            "layered": make_dag(layered_tasks(sz.levels, sz.width, sz.parents), "layered"),
            "random": make_dag(random_tasks(sz.random), "random"),
        }
        names = {
            "chain": f"chain of {sz.chain}",
            "fan": f"fan-out/fan-in 1 -> {sz.fan:,} -> 1",
            "layered": f"layered {sz.levels} x {sz.width} ({sz.parents} parents each)",
            "random": f"random {sz.random} (1-3 shared parents)",
        }
        n = {k: len(d.spec.tasks) for k, d in dags.items()}
        print(f"[bench] throughput, {reps} reps each ...", file=sys.stderr)
        res = interleaved(
            {
                "group:chain": lambda: bench.raw_group(n["chain"]),
                "raw:chain": lambda: bench.raw_chain(sz.chain),
                "df:chain": lambda: bench.dagflow(dags["chain"]),
                "group:fan": lambda: bench.raw_group(n["fan"]),
                "raw:fan": lambda: bench.raw_chord(sz.fan),
                "df:fan": lambda: bench.dagflow(dags["fan"]),
                "group:layered": lambda: bench.raw_group(n["layered"]),
                "df:layered": lambda: bench.dagflow(dags["layered"]),
                "group:random": lambda: bench.raw_group(n["random"]),
                "df:random": lambda: bench.dagflow(dags["random"]),
            },
            reps,
            meter,
        )
        print(f"[bench] hop latency, chain of {sz.hop_chain} ...", file=sys.stderr)
        hop_rows, hops = measure_hops(bench, sz.hop_chain, reps)
        print(
            f"[bench] raw chain of chords (limit {CHAIN_OF_CHORDS_LIMIT_S:.0f} s) ...",
            file=sys.stderr,
        )
        coc = measure(
            lambda: bench.raw_chain_of_chords(sz.coc_levels, sz.coc_width, CHAIN_OF_CHORDS_LIMIT_S),
            1,
            meter,
        )
        if coc is None:  # abandoned: drop what is left so it does not slow the next runs
            stop_worker(worker.proc)
            bench.purge()
            worker = start_worker(2, "c2b")

        rows = [
            Row(names["chain"], "raw flat group", n["chain"], res["group:chain"]),
            Row(names["chain"], "raw chain", sz.chain, res["raw:chain"], res["group:chain"],
                hops=sz.chain),
            Row(names["chain"], "dagflow", n["chain"], res["df:chain"], res["group:chain"],
                hops=sz.chain),
            Row(names["fan"], "raw flat group", n["fan"], res["group:fan"]),
            Row(names["fan"], "raw chord + body", sz.fan + 1, res["raw:fan"], res["group:fan"]),
            Row(names["fan"], "dagflow", n["fan"], res["df:fan"], res["group:fan"]),
            Row(names["layered"], "raw flat group", n["layered"], res["group:layered"]),
            Row(names["layered"], f"raw chain of {sz.coc_levels} chords x {sz.coc_width}",
                sz.coc_levels * (sz.coc_width + 1), coc, res["group:layered"]),
            Row(names["layered"], "dagflow", n["layered"], res["df:layered"], res["group:layered"]),
            Row(names["random"], "raw flat group", n["random"], res["group:random"]),
            Row(names["random"], "dagflow", n["random"], res["df:random"], res["group:random"]),
        ]  # fmt: skip

        if not args.skip_bytes:
            print("[bench] bytes pass (MONITOR) ...", file=sys.stderr)
            passes: list[tuple[int, Callable[[], Any]]] = [
                (0, lambda: bench.raw_group(n["chain"])),
                (1, lambda: bench.raw_chain(sz.chain)),
                (2, lambda: bench.dagflow(dags["chain"])),
                (3, lambda: bench.raw_group(n["fan"])),
                (4, lambda: bench.raw_chord(sz.fan)),
                (5, lambda: bench.dagflow(dags["fan"])),
                (6, lambda: bench.raw_group(n["layered"])),
                (8, lambda: bench.dagflow(dags["layered"])),
                (9, lambda: bench.raw_group(n["random"])),
                (10, lambda: bench.dagflow(dags["random"])),
            ]
            if coc is not None:
                passes.append(
                    (7, lambda: bench.raw_chain_of_chords(sz.coc_levels, sz.coc_width, 180))
                )
            for i, fn in passes:
                with monitored() as tr:
                    fn()
                rows[i].traffic = tr
        stop_worker(worker.proc)

        print(f"[bench] makespan on a -c {sz.sleep_concurrency} worker ...", file=sys.stderr)
        sleeper = start_worker(sz.sleep_concurrency, f"c{sz.sleep_concurrency}")
        sleep_params = {"s": sz.sleep_s}
        lay = make_dag(
            layered_tasks(
                sz.sleep_levels, sz.sleep_width, 3, wf="bench.sleep", params=sleep_params
            ),
            "sleep_layered",
        )
        rnd = make_dag(
            random_levels_tasks(
                sz.sleep_levels, max(2, sz.sleep_width // 3), sz.sleep_width, sz.sleep_s
            ),
            "sleep_random",
        )
        bench.dagflow(make_dag(chain_tasks(3, "bench.sleep", {"s": 0.01}), "warm"))
        mk = interleaved(
            {
                "lay": lambda: bench.dagflow(lay),
                "rnd": lambda: bench.dagflow(rnd),
                "coc": lambda: bench.raw_chain_of_chords(
                    sz.sleep_levels, sz.sleep_width, 120, sleep_s=sz.sleep_s
                ),
            },
            reps,
        )
        stop_worker(sleeper.proc)
        mk_rows = [
            "| shape | engine | tasks | critical path | ideal s | makespan s | ratio "
            "| target <= 1.1x |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for key, engine, dag in (("lay", "dagflow", lay), ("rnd", "dagflow", rnd),
                                 ("coc", "raw chain of chords", lay)):  # fmt: skip
            cp = len(dag.compiled.graph.critical_path())
            ideal = cp * sz.sleep_s
            tm = mk[key]
            ratio = tm.median / ideal if tm else None
            verdict = (
                "n/a"
                if ratio is None
                else ("met" if ratio <= 1.1 else f"MISSED by {ratio - 1.1:.2f}x")
            )
            label = f"{dag.name} ({len(dag.spec.tasks)} x {sz.sleep_s} s)"
            mk_rows.append(
                f"| {label} | {engine} | {len(dag.spec.tasks)} | {cp} | {ideal:.2f} "
                f"| {_f(tm.median if tm else None, '{:.3f}')} | {_f(ratio, '{:.3f}x')} "
                f"| {verdict} |"
            )

        print("[bench] dagflow plan ...", file=sys.stderr)
        plan_rows, plan_s = time_plan(sz.plan_tasks, max(reps, 3))

        # ----- targets
        r = {(x.shape, x.engine): x for x in rows}
        df = {k: r[(names[k], "dagflow")] for k in names}
        tg: list[tuple[str, str, bool | None]] = []
        lay_ratio = df["layered"].vs_group
        tg.append(
            (
                "layered DAG >= 0.8x the flat group's throughput",
                _f(lay_ratio, "{:.2f}x"),
                None if lay_ratio is None else lay_ratio >= 0.8,
            )
        )
        raw_hop = r[(names["chain"], "raw chain")].per_hop_ms
        df_hop = df["chain"].per_hop_ms
        hop = df_hop / raw_hop if df_hop and raw_hop else None
        tg.append(
            (
                "chain per hop <= 1.15x raw chain",
                f"{_f(df_hop, '{:.2f}')} ms vs {_f(raw_hop, '{:.2f}')} ms = {_f(hop, '{:.2f}x')}",
                None if hop is None else hop <= 1.15,
            )
        )
        hop_p50, hop_p99 = percentile(hops, 50), percentile(hops, 99)
        tg.append(
            (
                f"hop latency p50 <= {HOP_P50_TARGET_MS} ms (chain of {sz.hop_chain})",
                f"{hop_p50:.2f} ms",
                hop_p50 <= HOP_P50_TARGET_MS,
            )
        )
        tg.append(
            (
                f"hop latency p99 <= {HOP_P99_TARGET_MS:.0f} ms (chain of {sz.hop_chain})",
                f"{hop_p99:.2f} ms",
                hop_p99 <= HOP_P99_TARGET_MS,
            )
        )
        raw_chord_rate = r[(names["fan"], "raw chord + body")].rate
        fan = df["fan"].rate / raw_chord_rate if df["fan"].rate and raw_chord_rate else None
        tg.append(
            (
                "fan-in >= 0.9x a raw chord (tasks/s)",
                _f(fan, "{:.2f}x"),
                None if fan is None else fan >= 0.9,
            )
        )
        if not args.skip_bytes:
            worst_total = max(x.traffic.total / x.tasks for x in df.values() if x.traffic)
            worst_msg = max(statistics.mean(x.traffic.msg_sizes) for x in df.values() if x.traffic)
            tg.append(
                (
                    "<= 2 kB on the broker per task: the task messages (every shape)",
                    f"worst {worst_msg:,.0f} B",
                    worst_msg <= 2048,
                )
            )
            tg.append(
                (
                    "<= 2 kB on the broker per task: everything Redis receives (every shape)",
                    f"worst {worst_total:,.0f} B",
                    worst_total <= 2048,
                )
            )
        for key in ("lay", "rnd"):
            tm = mk[key]
            dag = lay if key == "lay" else rnd
            ratio = (
                tm.median / (len(dag.compiled.graph.critical_path()) * sz.sleep_s) if tm else None
            )
            tg.append(
                (
                    f"makespan <= 1.1x critical path ({dag.name})",
                    _f(ratio, "{:.3f}x"),
                    None if ratio is None else ratio <= 1.1,
                )
            )
        tg.append(
            (
                f"`dagflow plan` of {sz.plan_tasks:,} tasks < 1 s (whole command)",
                f"{plan_s:.3f} s",
                plan_s < 1.0,
            )
        )

        out += [
            f"Throughput (no-op tasks, median of {reps}; worker prefork -c 2; ratios use "
            "medians; 'vs flat group' = dagflow or canvas tasks/s over a raw flat group of "
            "the same number of tasks with results):",
            "",
        ]
        out += table_rows(rows)
        out += ["", *hop_rows]
        out += [
            "",
            "CPU per task during the timed runs (/proc utime+stime, all reps; 'cores busy' = "
            "CPU seconds / wall seconds, out of 2):",
            "",
            *cpu_rows(rows),
        ]
        if not args.skip_bytes:
            out += [
                "",
                "Bytes Redis received per task on db 12, by category (RESP, from MONITOR; "
                "'server-wide' is the INFO total_net_input_bytes delta, which includes MONITOR's "
                "own and other databases' traffic):",
                "",
            ]
            out += traffic_rows(rows)
            out += ["", *command_rows(rows)]
        out += [
            "",
            f"Makespan (bench.sleep {sz.sleep_s} s tasks, worker prefork "
            f"-c {sz.sleep_concurrency}, median of {reps}):",
            "",
            *mk_rows,
        ]
        out += ["", *plan_rows]
        out += ["", "Targets:", "", "| target | measured | met |", "|---|---|---|"]
        out += [
            f"| {a} | {b} | {'n/a' if c is None else ('yes' if c else 'NO')} |" for a, b, c in tg
        ]
        out += [
            "",
            f"Total benchmark time: {time.perf_counter() - started:.0f} s; load average at the "
            f"end: {os.getloadavg()[0]:.2f}.",
        ]
        print("\n".join(out))
        bench.release_pending()
        bench.runner.close()
        # Collect the raw results' subscriptions now, not in __del__ during interpreter exit.
        gc.collect()
        return 0
    finally:
        for proc in list(_WORKERS):
            stop_worker(proc)
        admin.flushdb()
        admin.close()
        shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
