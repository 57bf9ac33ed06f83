"""A chaos harness: steady DAG load on a small cluster while a seeded injector breaks things.

Used by ``tests/integration/test_chaos.py`` (a short run with assertions) and
``bench/chaos.py`` (a long run that prints a table); nothing here imports pytest.

One :class:`ChaosRun` owns a :class:`tests.support.cluster.Cluster` (a private
``redis-server`` with AOF ``appendfsync always`` on a free port), ``workers`` real
``celery -A dagflow worker`` processes, optionally ``dagflow events collect``, a load thread
that submits a 25-task DAG (fan-outs, joins, two flaky tasks with retries, payload passing;
every other run also a ``map`` over 4-6 items, one instance flaky, and a join of them)
every ``submit_every_s`` through :meth:`dagflow.client.runner.Runner.submit`, and, in the main
thread, a fault injector driven by ``random.Random(seed)``: every ``fault_every_s`` it takes
the next kind from rounds of all kinds, each round in a seeded order (a short run still
sees every kind; the same seed gives the same sequence of kinds, while targets and the exact
times depend on what is up when the fault is due):

* ``worker_kill``: SIGKILL a worker's process group, start a new worker after a pause;
* ``pool_kill``: SIGKILL one pool process (a psutil child of a worker's main process), one
  running a step if any (every other time one running a map instance, if any);
* ``freeze``: SIGSTOP a worker's group, SIGCONT it 0.5-2.5 leases later (some outlast the lease);
* ``redis_kill``: SIGKILL Redis, start it again 1-4 s later on the same port and AOF;
* ``client_kill``: ``CLIENT KILL TYPE normal`` (every client connection dropped, Redis up);
* ``collector_kill``: SIGKILL the collector, start it again after a pause.

Every fault is recorded with its wall-clock time, as is every worker process that exited
without being killed (it is started again, so the load goes on, but it is counted). After
the chaos window the faults stop, the load drains with a bounded wait, and :func:`analyse`
judges the run from what the system itself recorded: the Redis event stream every worker
writes, the spans the ``test.chaos`` workflow writes (:mod:`tests.support.workflows`), the
run store's outputs and the workers' logs. Only processes this harness started are ever
signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from dagflow.client.runner import RunHandle
from dagflow.dag.load import Dag
from dagflow.dag.mapping import split_instance
from dagflow.events.collector import collector_lag
from tests.support.cluster import Cluster
from tests.support.dags import make_dag, task
from tests.support.processes import ROOT, kill_worker, log_tail, start_worker, stop_worker

#: Seconds added to every recovery bound: workers, Redis and the test share 2 busy cores.
SLACK_S = 5.0
#: "At once" for a killed pool process (README: its worker releases the lease; measured ~1 s).
POOL_KILL_S = 1.0
#: A holder frozen this many leases may lose its lease (it renews every lease / 3).
FROZEN_LEASES_TO_LOSE = 2 / 3
#: Every fault kind the injector knows.
FAULT_KINDS = (
    "worker_kill",
    "pool_kill",
    "freeze",
    "redis_kill",
    "client_kill",
    "collector_kill",
)
#: Pseudo-fault recorded when a worker process exited without being killed.
WORKER_EXIT = "worker_exit"
#: Bytes of the spans file's end read to find the pool processes running a step.
SPANS_TAIL_BYTES = 64_000
#: Seconds between two looks of the supervisor loop.
TICK_S = 0.05
#: Seconds the collector gets, after the drain, to write every event of the stream (it looks
#: for entries of a killed collector every 15 s, after they were idle DAGFLOW_COLLECTOR_CLAIM_S).
COLLECTOR_CATCH_UP_S = 45.0


@dataclass(frozen=True)
class ChaosConfig:
    """What one chaos run does.

    Attributes:
        seed: Seeds the injector (kinds, targets, pauses) and the load's step durations.
        duration_s: Seconds of load (and of faults, unless ``faults`` is empty).
        workers: Worker processes (``-c concurrency`` each).
        concurrency: Pool processes per worker.
        lease_s: ``DAGFLOW_LEASE_S``.
        sweep_s: ``DAGFLOW_SWEEP_S``.
        retry_base_s: ``DAGFLOW_RETRY_BASE_S`` (first retry delay; doubles, capped at 2x).
        submit_every_s: Seconds between two submitted runs.
        fault_every_s: Range of seconds between two faults.
        faults: Fault kinds to inject (empty: a no-fault baseline).
        collector: Run ``dagflow events collect`` (needed for ``collector_kill``).
        drain_timeout_s: Seconds the runs get to end after the chaos window.
        freeze_leases: Range of a SIGSTOP's length, in leases.
        redis_down_s: Range of seconds Redis stays down after a SIGKILL.
        restart_pause_s: Range of seconds before a killed worker or collector is started again.
    """

    seed: int = 1
    duration_s: float = 75.0
    workers: int = 3
    concurrency: int = 2
    lease_s: float = 3.0
    sweep_s: float = 0.5
    retry_base_s: float = 2.0
    submit_every_s: float = 2.0
    fault_every_s: tuple[float, float] = (3.0, 6.0)
    faults: tuple[str, ...] = FAULT_KINDS
    collector: bool = True
    drain_timeout_s: float = 90.0
    freeze_leases: tuple[float, float] = (0.5, 2.5)
    redis_down_s: tuple[float, float] = (1.0, 4.0)
    restart_pause_s: tuple[float, float] = (0.5, 2.0)

    def env(self) -> dict[str, str]:
        """The dagflow settings of the workers, the collector and the runner."""
        return {
            "DAGFLOW_LEASE_S": f"{self.lease_s:g}",
            "DAGFLOW_SWEEP_S": f"{self.sweep_s:g}",
            "DAGFLOW_RETRY_BASE_S": f"{self.retry_base_s:g}",
            "DAGFLOW_RETRY_MAX_S": f"{2 * self.retry_base_s:g}",
            "DAGFLOW_RETRY_JITTER": "0",
            "DAGFLOW_COLLECTOR_CLAIM_S": "2",
        }


# --------------------------------------------------------------------------- the load


#: The load's DAG: ``(task id, parents, failures before success)``. 25 tasks: a root fanning
#: out to 6 and a flaky task, joins of 3-4 parents, a second fan-out, a task failing twice,
#: three more joins, a fan-out of 4 and a final join of 4.
DAG_SHAPE: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("root", (), 0),
    *((f"a{i}", ("root",), 0) for i in range(6)),
    ("flaky1", ("root",), 1),
    ("b0", ("a0", "a1", "a2"), 0),
    ("b1", ("a3", "a4", "a5", "flaky1"), 0),
    *((f"c{i}", ("b0",), 0) for i in range(3)),
    *((f"c{i}", ("b1",), 0) for i in (3, 4)),
    ("c5", ("b0", "b1"), 0),
    ("flaky2", ("b0", "b1"), 2),
    ("d0", ("c0", "c1"), 0),
    ("d1", ("c2", "c3"), 0),
    ("d2", ("c4", "c5", "flaky2"), 0),
    ("e0", ("d0",), 0),
    ("e1", ("d1",), 0),
    ("e2", ("d2",), 0),
    ("e3", ("d0", "d2"), 0),
    ("end", ("e0", "e1", "e2", "e3"), 0),
)
#: Range of one step's run time, in seconds.
STEP_SECONDS = (0.05, 0.5)
#: The map branch, in every other run (odd index): ``(task id, parents, failures)`` as in
#: :data:`DAG_SHAPE`. ``list`` returns :data:`MAP_ITEMS` items, ``each`` maps over them (one
#: instance fails its first attempt) and ``join``, a parent of ``end``, gets
#: ``each__results``. Every other run only: a plan with a map takes the store's rule path
#: for all its tasks, so the runs without one keep the links-and-joins path under chaos.
MAP_BRANCH: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("list", ("a3",), 0),
    ("each", ("list",), 1),
    ("join", ("each",), 0),
)
#: The mapped task of :data:`MAP_BRANCH` and the parent's key it maps over.
MAPPED, MAP_REF = "each", "list.items"
#: How many items ``list`` returns: from the run's index, in turn.
MAP_ITEMS = (4, 5, 6)


def has_map(index: int) -> bool:
    """The ``index``-th run has the map branch (every other run, the first one included)."""
    return index % 2 == 1


def chaos_dag(
    index: int, spans_dir: Path, rng: random.Random
) -> tuple[Dag, dict[str, Any], dict[str, Mapped]]:
    """The ``index``-th run's DAG (name ``chaos_<index>``), the output each task must have
    (every instance of a mapped task included, as ``each[3]``) and its mapped tasks.

    Each DAG has its own name so that a worker's log line ``Task chaos_0007:flaky1[...]
    received`` says which run's message that worker holds (see :func:`held_retries`).
    """
    shape = list(DAG_SHAPE)
    mapped: dict[str, Mapped] = {}
    parent, key = MAP_REF.split(".")
    if has_map(index):
        end_id, end_parents, end_failures = shape.pop()
        shape += [*MAP_BRANCH, (end_id, (*end_parents, MAP_BRANCH[-1][0]), end_failures)]
        n = MAP_ITEMS[(index // 2) % len(MAP_ITEMS)]
        mapped[MAPPED] = Mapped(parent, n, tuple(t for t, ps, _ in MAP_BRANCH if MAPPED in ps))
    tasks = []
    expected: dict[str, Any] = {}
    for i, (task_id, parents, failures) in enumerate(shape):
        v = index * 100 + i
        params: dict[str, Any] = {
            "dir": str(spans_dir),
            "v": v,
            "seconds": round(rng.uniform(*STEP_SECONDS), 3),
        }
        if failures:
            params["failures"] = failures
        extra: dict[str, Any] = {}
        joined = [r for p in parents if p in mapped for r in expected[p]["results"]]
        value = v + sum(expected[p]["value"] for p in parents if p not in mapped)
        value += sum(r["value"] for r in joined)
        expected[task_id] = {"value": value, "parents": sorted(parents)}
        if joined:
            expected[task_id]["indexes"] = [r["index"] for r in joined]
        if task_id == parent and mapped:
            items = [index * 1000 + 7 * k for k in range(mapped[MAPPED].instances)]
            params[key] = expected[task_id][key] = items
        elif task_id in mapped:
            params["flaky_indexes"] = [index % mapped[task_id].instances]
            extra["map"] = MAP_REF
            instances = [
                {"value": value + item, "parents": sorted(parents), "item": item, "index": k}
                for k, item in enumerate(expected[parent][key])
            ]
            expected.update({f"{task_id}[{k}]": out for k, out in enumerate(instances)})
            expected[task_id] = {"results": instances}
        tasks.append(
            task(task_id, "test.chaos", deps=parents, params=params, retries=failures + 2, **extra)
        )
    return make_dag(tasks, name=f"chaos_{index:04d}", tenant="chaos"), expected, mapped


# --------------------------------------------------------------------------- records


@dataclass
class Fault:
    """One injected fault (times are epoch seconds, as in the event log).

    Attributes:
        kind: One of :data:`FAULT_KINDS`, or :data:`WORKER_EXIT` for a worker that exited.
        at: When it was injected.
        target: Worker node name, ``pid <n> of <node>``, ``redis`` or ``collector``.
        until: When it was undone (SIGCONT, Redis up again, restart), if it was.
        detail: The exit code and log tail of a worker that exited, and the like.
    """

    kind: str
    at: float
    target: str = ""
    until: float | None = None
    detail: str = ""
    pid: int | None = None


@dataclass(frozen=True)
class Mapped:
    """A mapped task of a submitted run: the parent whose end expands it, into how many
    instances, and the children that start once they all ended."""

    parent: str
    instances: int
    children: tuple[str, ...]


@dataclass(frozen=True)
class Submission:
    """One run the load generator submitted (or tried to).

    ``expected`` holds every task's output (each instance's too, as ``each[3]``); ``mapped``
    the run's mapped tasks.
    """

    index: int
    run_id: str
    dag_name: str
    at: float
    expected: Mapping[str, Any]
    error: str | None = None
    mapped: Mapping[str, Mapped] = field(default_factory=dict)


@dataclass
class Slot:
    """One of the ``workers`` places; each (re)start is a new worker named ``w<slot>g<gen>``."""

    number: int
    gen: int = 0
    proc: subprocess.Popen[bytes] | None = None
    node: str = ""
    state: str = "down"  # down, starting, up, frozen
    started_at: float = 0.0


@dataclass(frozen=True)
class WorkerLife:
    """When one worker process could take work (ready) and when it stopped."""

    node: str
    log: Path
    ready_at: float
    ended_at: float | None


@dataclass
class Observations:
    """Everything a chaos run recorded, for :func:`analyse`."""

    config: ChaosConfig
    started_at: float
    chaos_ended_at: float
    drained_at: float
    events: list[dict[str, Any]]
    spans_path: Path
    submissions: list[Submission]
    faults: list[Fault]
    lives: list[WorkerLife]
    outputs: dict[str, dict[str, Any]]
    not_ended: dict[str, str]
    collector_check: str | None = None
    harness_notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the run


class ChaosRun:
    """A cluster under load and faults. Use :meth:`run`; it stops everything it started.

    Args:
        root: Folder for Redis's data, the logs and the spans file.
        config: What to do.
        log: Called with one line per fault and per notable harness event.
    """

    def __init__(
        self, root: Path, config: ChaosConfig, log: Callable[[str], None] | None = None
    ) -> None:
        self.root = root
        self.config = config
        self.say = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.rng = random.Random(config.seed)
        self.load_rng = random.Random(config.seed + 1)
        self.spans_dir = root / "spans"
        self.spans_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = Cluster(root, extra_env=config.env())
        self.host = socket.gethostname()
        self.slots = [Slot(n + 1) for n in range(config.workers)]
        self.lives: list[WorkerLife] = []
        self.faults: list[Fault] = []
        self.submissions: list[Submission] = []
        self.notes: list[str] = []
        self.actions: list[tuple[float, str, Callable[[], None]]] = []
        self.lock = threading.RLock()
        self.stop_load = threading.Event()
        self.collector: subprocess.Popen[bytes] | None = None
        self.collector_gen = 0
        self.collector_exits: list[str] = []
        self.redis_down: Fault | None = None
        self.kinds: list[str] = []
        self.t0 = time.time()

    # ---------------------------------------------------------------- processes

    def _start_slot(self, slot: Slot) -> None:
        """Start the slot's next worker and wait until it is ready (in the calling thread)."""
        with self.lock:
            slot.gen += 1
            name = f"w{slot.number}g{slot.gen}"
            slot.state, slot.node, slot.proc = "starting", f"{name}@{self.host}", None
        try:
            proc = start_worker(
                self.cluster.env,
                self.root / f"worker-{name}.log",
                concurrency=self.config.concurrency,
                name=f"{name}@%h",
            )
        except RuntimeError as exc:  # not ready in time (it was killed): try again later
            self._note(f"worker {name} did not start: {str(exc).splitlines()[0]}")
            with self.lock:
                slot.state = "down"
            self._schedule(1.0, f"start slot {slot.number}", lambda: self._restart(slot))
            return
        with self.lock:
            slot.proc, slot.state, slot.started_at = proc, "up", time.time()

    def _restart(self, slot: Slot) -> None:
        """Start the slot's next worker in a thread (the supervisor loop must not block)."""
        if self.redis_down is not None:  # it would wait for Redis, which this loop restarts
            self._schedule(0.5, f"start slot {slot.number}", lambda: self._restart(slot))
            return
        with self.lock:
            slot.state = "starting"
        threading.Thread(target=self._start_slot, args=(slot,), daemon=True).start()

    def _end_life(self, slot: Slot, at: float | None) -> None:
        name = slot.node.split("@")[0]
        self.lives.append(
            WorkerLife(slot.node, self.root / f"worker-{name}.log", slot.started_at, at)
        )

    def _start_collector(self) -> None:
        self.collector_gen += 1
        log = self.root / f"collector-{self.collector_gen}.log"
        with log.open("wb") as handle:
            self.collector = subprocess.Popen(
                [sys.executable, "-m", "dagflow", "events", "collect"],
                cwd=ROOT,
                env=self.cluster.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _schedule(self, delay: float, what: str, action: Callable[[], None]) -> None:
        with self.lock:
            self.actions.append((time.monotonic() + delay, what, action))

    def _run_due_actions(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            due = [a for a in self.actions if everything or a[0] <= now]
            self.actions = [a for a in self.actions if a not in due]
        # Redis first: a worker started while it is down would wait for it.
        for _, _, action in sorted(due, key=lambda a: (not a[1].startswith("redis"), a[0])):
            action()

    def _note(self, line: str) -> None:
        self.notes.append(f"{time.time() - self.t0:7.2f}s {line}")
        self.say(f"[chaos] {self.notes[-1]}")

    def _record(self, fault: Fault) -> None:
        self.faults.append(fault)
        extra = f" ({fault.detail})" if fault.detail else ""
        self._note(f"{fault.kind} {fault.target}{extra}")

    def _check_exits(self) -> None:
        """Record and replace workers (and the collector) that exited on their own."""
        with self.lock:
            slots = [s for s in self.slots if s.state in ("up", "frozen") and s.proc]
        for slot in slots:
            assert slot.proc is not None
            rc = slot.proc.poll()
            if rc is None:
                continue
            at = time.time()
            name = slot.node.split("@")[0]
            tail = log_tail(self.root / f"worker-{name}.log", 12)
            # Its pool processes may outlive it: they are ours, end them with the group.
            kill_worker(slot.proc)
            self._end_life(slot, at)
            self._record(Fault(WORKER_EXIT, at, slot.node, at, f"rc {rc}: {_last_error(tail)}"))
            with self.lock:
                slot.state, slot.proc = "down", None
            self._restart(slot)
        if self.collector is not None and self.collector.poll() is not None:
            rc = self.collector.returncode
            self._note(f"collector exited by itself (rc {rc}); starting it again")
            self.collector_exits.append(f"rc {rc} at +{time.time() - self.t0:.1f} s")
            self._start_collector()

    # ---------------------------------------------------------------- faults

    def _eligible_workers(self) -> list[Slot]:
        with self.lock:
            return [s for s in self.slots if s.state == "up" and s.proc is not None]

    def _next_kind(self) -> str:
        """The next fault kind: rounds of every kind, each round in a seeded random order.

        Rounds rather than independent draws, so that a short run still injects every kind
        and a seed always names the same sequence of kinds.
        """
        if not self.kinds:
            self.kinds = list(self.config.faults)
            self.rng.shuffle(self.kinds)
        return self.kinds.pop(0)

    def _inject(self, kind: str) -> bool:
        """Inject ``kind`` if it can be now; False if it must wait (then call again later)."""
        cfg = self.config
        up = self._eligible_workers()
        frozen = any(s.state == "frozen" for s in self.slots)
        if kind in ("worker_kill", "freeze") and len(up) < 2:
            return False  # leave at least one worker able to take over
        if kind == "freeze" and frozen:
            return False
        if kind == "pool_kill" and not up:
            return False
        if kind in ("redis_kill", "client_kill") and self.redis_down is not None:
            return False
        if kind == "collector_kill" and (self.collector is None or not cfg.collector):
            return False
        getattr(self, f"_{kind}")(up)
        return True

    def _worker_kill(self, up: list[Slot]) -> None:
        slot = self.rng.choice(up)
        pause = self.rng.uniform(*self.config.restart_pause_s)
        assert slot.proc is not None
        at = time.time()
        kill_worker(slot.proc)
        self._end_life(slot, at)
        fault = Fault("worker_kill", at, slot.node, detail=f"restart after {pause:.1f} s")
        self._record(fault)
        with self.lock:
            slot.state, slot.proc = "down", None

        def restart() -> None:
            fault.until = time.time()
            self._restart(slot)

        self._schedule(pause, f"start slot {slot.number}", restart)

    def _pool_kill(self, up: list[Slot]) -> None:
        slot = self.rng.choice(up)
        assert slot.proc is not None
        try:
            children = sorted(psutil.Process(slot.proc.pid).children(), key=lambda p: p.pid)
        except psutil.NoSuchProcess:
            return
        if not children:
            return
        # Prefer a pool process that is running a step: killing an idle one tests little.
        # Instances are a tenth of the steps: one pool kill in two takes one if it can.
        busy = self._busy_pids()
        running = [c for c in children if c.pid in busy]
        instances = [c for c in running if split_instance(busy[c.pid])[1] is not None]
        if instances and self.rng.random() < 0.5:
            running = instances
        child = self.rng.choice(running or children)
        at = time.time()
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
        self._record(Fault("pool_kill", at, slot.node, pid=child.pid, detail=f"pid {child.pid}"))

    def _busy_pids(self) -> dict[int, str]:
        """Pids with an execution of ``test.chaos`` started and not ended (spans file tail),
        with the task id it runs."""
        path = self.spans_dir / "spans.txt"
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - SPANS_TAIL_BYTES))
                lines = handle.read().decode(errors="replace").splitlines()[1:]
        except OSError:
            return {}
        open_keys: dict[str, tuple[int, str]] = {}
        for line in lines:
            parts = line.split()
            if len(parts) != 6:
                continue
            key = " ".join(parts[1:5])
            if parts[0] == "start":
                open_keys[key] = (int(parts[4]), parts[2])
            elif parts[0] == "end":
                open_keys.pop(key, None)
        return dict(open_keys.values())

    def _freeze(self, up: list[Slot]) -> None:
        slot = self.rng.choice(up)
        length = self.rng.uniform(*self.config.freeze_leases) * self.config.lease_s
        assert slot.proc is not None
        proc = slot.proc
        at = time.time()
        os.killpg(proc.pid, signal.SIGSTOP)
        fault = Fault("freeze", at, slot.node, detail=f"{length:.1f} s")
        self._record(fault)
        with self.lock:
            slot.state = "frozen"

        def thaw() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            fault.until = time.time()
            with self.lock:
                if slot.proc is proc and slot.state == "frozen":
                    slot.state = "up"

        self._schedule(length, f"thaw slot {slot.number}", thaw)

    def _redis_kill(self, up: list[Slot]) -> None:
        down = self.rng.uniform(*self.config.redis_down_s)
        at = time.time()
        self.cluster.server.kill()
        fault = Fault("redis_kill", at, "redis", detail=f"down {down:.1f} s")
        self.redis_down = fault
        self._record(fault)

        def restart() -> None:
            self.cluster.server.restart()
            fault.until = time.time()
            self.redis_down = None

        self._schedule(down, "redis restart", restart)

    def _client_kill(self, up: list[Slot]) -> None:
        client = self.cluster.server.client()
        try:
            at = time.time()
            killed = client.client_kill_filter(_type="normal", skipme=True)
        except redis.RedisError as exc:
            self._note(f"client_kill failed: {exc}")
            return
        finally:
            client.close()
        self._record(Fault("client_kill", at, "redis", at, f"{killed} connections"))

    def _collector_kill(self, up: list[Slot]) -> None:
        proc = self.collector
        assert proc is not None
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.collector = None
        pause = self.rng.uniform(*self.config.restart_pause_s)
        fault = Fault("collector_kill", at, "collector", detail=f"restart after {pause:.1f} s")
        self._record(fault)

        def restart() -> None:
            self._start_collector()
            fault.until = time.time()

        self._schedule(pause, "collector restart", restart)

    # ---------------------------------------------------------------- load

    def _load(self) -> None:
        index = 0
        next_at = time.monotonic()
        while not self.stop_load.is_set():
            index += 1
            dag, expected, mapped = chaos_dag(index, self.spans_dir, self.load_rng)
            run_id = uuid.uuid4().hex
            at = time.time()
            error = None
            try:
                self.cluster.runner.submit(dag, run_id=run_id)
            except Exception as exc:  # Redis down or cut off: the client is told, goes on
                error = f"{type(exc).__name__}: {exc}"
            self.submissions.append(
                Submission(index, run_id, dag.name, at, expected, error, mapped)
            )
            next_at += self.config.submit_every_s
            self.stop_load.wait(max(0.0, next_at - time.monotonic()))

    # ---------------------------------------------------------------- the whole run

    def run(self) -> Observations:
        """Start everything, load and break it for ``duration_s``, drain, collect, stop."""
        cfg = self.config
        try:
            for slot in self.slots:
                self._start_slot(slot)
            if cfg.collector:
                self._start_collector()
            self.t0 = started = time.time()
            self._note(
                f"seed {cfg.seed}: {cfg.workers} workers -c {cfg.concurrency}, lease "
                f"{cfg.lease_s:g} s, sweep {cfg.sweep_s:g} s, faults {list(cfg.faults)}"
            )
            loader = threading.Thread(target=self._load, name="chaos-load", daemon=True)
            loader.start()
            end = time.monotonic() + cfg.duration_s
            next_fault = time.monotonic() + self.rng.uniform(*cfg.fault_every_s)
            kind = self._next_kind() if cfg.faults else ""
            while time.monotonic() < end:
                self._run_due_actions()
                self._check_exits()
                # A fault that cannot happen yet (no second worker up, Redis already down)
                # waits for the next tick rather than being replaced by another kind.
                if kind and time.monotonic() >= next_fault and self._inject(kind):
                    kind = self._next_kind()
                    next_fault = time.monotonic() + self.rng.uniform(*cfg.fault_every_s)
                time.sleep(TICK_S)
            self.stop_load.set()
            loader.join(60)
            chaos_ended = time.time()
            self._note(f"chaos window over: {len(self.submissions)} runs submitted; draining")
            self._run_due_actions(everything=True)
            not_ended = self._drain(cfg.drain_timeout_s)
            drained = time.time()
            self._note(f"drained: {len(not_ended)} runs not ended")
            collector_check = self._check_collector() if cfg.collector else None
            events = self.cluster.runner.runtime.events.read()
            outputs = self._outputs()
            for slot in self.slots:
                if slot.proc is not None:
                    self._end_life(slot, None)
            return Observations(
                cfg,
                started,
                chaos_ended,
                drained,
                events,
                self.spans_dir / "spans.txt",
                list(self.submissions),
                list(self.faults),
                list(self.lives),
                outputs,
                not_ended,
                collector_check,
                list(self.notes),
            )
        finally:
            self.close()

    def _drain(self, timeout: float) -> dict[str, str]:
        """Wait until every run the store knows has ended; the ones that did not, by status."""
        store = self.cluster.runner.runtime.store
        pending = {s.run_id for s in self.submissions}
        status: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            self._run_due_actions()
            self._check_exits()
            for run_id in sorted(pending):
                try:
                    snap = store.snapshot(run_id)
                except Exception as exc:  # keep waiting: Redis may be restarting
                    status[run_id] = f"unreadable: {type(exc).__name__}"
                    break
                if snap is None:
                    status[run_id] = "unknown to the store"
                    pending.discard(run_id)  # never created (submit failed), or vanished
                elif snap.status != "running" and snap.status != "pending":
                    status[run_id] = snap.status
                    pending.discard(run_id)
                else:
                    status[run_id] = snap.status
            time.sleep(0.2)
        return {run_id: status.get(run_id, "?") for run_id in pending}

    def _outputs(self) -> dict[str, dict[str, Any]]:
        outputs: dict[str, dict[str, Any]] = {}
        for sub in self.submissions:
            try:
                outputs[sub.run_id] = RunHandle(self.cluster.runner, sub.run_id).outputs(
                    list(sub.expected)
                )
            except Exception as exc:  # recorded; the analysis reports the missing outputs
                self._note(f"outputs of {sub.run_id} unreadable: {exc}")
        return outputs

    def _check_collector(self) -> str | None:
        """Wait (bounded) until the collector wrote every event of the stream; None if it did
        and never exited on its own, else what differs. A collector killed at any moment must
        lose and double nothing."""
        client = self.cluster.server.client()
        deadline = time.monotonic() + COLLECTOR_CATCH_UP_S
        lag = None
        try:
            while time.monotonic() < deadline:
                self._check_exits()
                lag = collector_lag(client, int(time.time() * 1000))
                if lag.entries == 0:
                    break
                time.sleep(0.5)
        finally:
            client.close()
        stream_ids = {
            entry_id
            for entry_id, log, _ in self.cluster.runner.runtime.events.entries()  # type: ignore[attr-defined]
            if log == "events"
        }
        written: list[str] = []
        path = self.cluster.events_path
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    written.append(str(json.loads(line).get("event_id")))
        doubles = [i for i, n in Counter(written).items() if n > 1]
        missing = stream_ids - set(written)
        exits = f"; it exited on its own: {', '.join(self.collector_exits)}"
        if not doubles and not missing and not self.collector_exits:
            return None
        return (
            f"collector: {len(missing)} of {len(stream_ids)} stream events missing from "
            f"{path.name}, {len(doubles)} written twice (lag at the end: {lag})"
            f"{exits if self.collector_exits else ''}"
        )

    def close(self) -> None:
        """SIGCONT what is frozen, then stop the workers, the collector, the runner, Redis."""
        self.stop_load.set()
        with self.lock:
            self.actions.clear()
            slots = list(self.slots)
        for slot in slots:
            if slot.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(slot.proc.pid, signal.SIGCONT)
                stop_worker(slot.proc, timeout=5)
                slot.proc = None
        # A worker still starting in a thread is stopped when its thread gives it back.
        deadline = time.monotonic() + 35
        while any(s.state == "starting" for s in slots) and time.monotonic() < deadline:
            time.sleep(0.1)
        for slot in slots:
            if slot.proc is not None:
                stop_worker(slot.proc, timeout=5)
                slot.proc = None
        if self.collector is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.collector.pid, signal.SIGTERM)
            try:
                self.collector.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.collector.pid, signal.SIGKILL)
                self.collector.wait(10)
            self.collector = None
        self.cluster.close()


def _last_error(tail: str) -> str:
    """The line of a worker's log tail that says why it exited (or its last line)."""
    lines = [line for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Unrecoverable error" in line or "Error" in line:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "(empty log)"
