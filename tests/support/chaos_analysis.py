"""Judge a chaos run (:mod:`tests.support.chaos`) from what the system itself recorded.

Pure: it takes the :class:`~tests.support.chaos.Observations` (the Redis event stream's
events, the ``test.chaos`` spans file, the faults, the outputs read from the run store, the
workers' logs) and returns a :class:`ChaosReport`: the checks that failed, each with its
evidence, recovery times per fault kind, and tables for the benchmark.

What it checks, and where each promise comes from (the README's "Guarantees"):

* every run the store knows ended ``success``, with one ``dag_done``, and every task's
  output is the one computed from the DAG (payload passing through fan-outs and joins, and
  through a map: each instance's from its item, the join's from every instance's output,
  in item order);
* exactly one ``task_ok`` per task per run, each instance of a mapped task counting as a
  task (``each[3]``) and the mapped task itself as none ("each task ends once");
* a mapped task expanded once, into as many instances as its parent's list has items, and
  ended once ("a mapped task expands once and joins once"): one ``map_expand`` with the
  right ``instances`` and one ``map_done`` ``success``, never two and never missing (the
  finish script writes them in the commit that expands or ends the task);
* no two executions of a step were alive at the same time, unless the earlier holder had
  lost its lease: its worker was frozen for long enough (SIGSTOP), or Redis was down;
* no worker process exited on its own;
* recovery: each step a fault took from its holder runs again (or is finished by its
  holder) within the README's bound plus :data:`~tests.support.chaos.SLACK_S`:
  ``lease + sweep`` after a whole-worker kill, a freeze or a connection blip, ``lease +
  sweep`` after Redis is back for a Redis kill, at once after a pool process kill; a retry
  held by a killed or frozen worker runs by ``due + lease + sweep``. The bound is extended
  by the time, inside it, when Redis was down or no worker could run anything;
* every retry (held by anyone) starts by ``due + lease + sweep`` (+ slack, + that time);
* a connection blip does not take a running step from its holder;
* the collector wrote every event of the stream exactly once.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from dagflow.dag.mapping import split_instance
from tests.support.chaos import (
    FROZEN_LEASES_TO_LOSE,
    POOL_KILL_S,
    SLACK_S,
    WORKER_EXIT,
    Fault,
    Mapped,
    Observations,
    WorkerLife,
)

#: Events that end one execution (one fence) of a step.
END_EVENTS = ("task_ok", "task_fail", "task_retry", "task_lease_lost")
#: Resolution of the "blocked" measure (Redis down or no worker able to run), in seconds.
BLOCKED_STEP_S = 0.05
_RECEIVED = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/MainProcess\] Task (\S+?)\[[^\]]+\] received"
)


def event_time(event: dict[str, Any]) -> float:
    """Epoch seconds of an event's ``timestamp`` (UTC ISO 8601)."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


@dataclass(frozen=True)
class Execution:
    """One holder of a step: its ``task_start`` and the event that ended it, if any."""

    run_id: str
    task_id: str
    fence: int
    attempt: int
    worker: str
    start: float
    end: float | None
    superseded: float | None = None

    @property
    def released(self) -> float | None:
        """When it stopped holding the step: its own end, or a later fence's start."""
        ends = [t for t in (self.end, self.superseded) if t is not None]
        return min(ends) if ends else None


@dataclass(frozen=True)
class Span:
    """One execution of the ``test.chaos`` workflow, from its spans lines."""

    run_id: str
    task_id: str
    fence: int
    pid: int
    first: float
    last: float
    ended: bool


@dataclass(frozen=True)
class Recovery:
    """A step a fault took from its holder, and when it moved again.

    Attributes:
        kind: The fault kind.
        what: ``running step`` or ``held retry``.
        fault_at: When the fault happened.
        anchor: When the bound starts: the fault, or a held retry's due time if later.
        deadline: Anchor + bound + slack + time blocked inside it.
        recovered_at: The next ``task_start`` of the step (or its holder's own end), if any.
        how: What moved it.
        holder: The worker that held it when the fault hit, when known.
    """

    kind: str
    what: str
    run_id: str
    task_id: str
    fault_at: float
    anchor: float
    deadline: float
    recovered_at: float | None
    how: str
    holder: str | None = None

    @property
    def seconds(self) -> float:
        """Seconds from the anchor to the recovery (inf if it never recovered)."""
        return math.inf if self.recovered_at is None else self.recovered_at - self.anchor

    @property
    def late(self) -> bool:
        """It did not recover by its deadline."""
        return self.recovered_at is None or self.recovered_at > self.deadline


@dataclass
class ChaosReport:
    """The verdict on one chaos run.

    Attributes:
        seed: The run's seed (every message names it, so a failure can be replayed).
        failures: ``check: evidence`` lines, one per failed check (empty: all passed).
        recoveries: Every measured recovery.
        retry_lateness: Seconds from each retry's due time to its start.
        faults: Injected faults by kind (and worker exits).
        runs: Runs submitted, known to the store, succeeded.
        rerun_steps: Steps whose workflow started under more than one fence for one attempt.
        extra_executions: How many such extra starts in all.
        runs_per_min: Runs that ended ``success`` per minute, from the first run's end to
            the end of the load window (the submit rate when the system keeps up).
        run_seconds: Durations (``dag_done``) of the successful runs.
        exits: The worker exits, one line each.
        maps: Mapped tasks checked, their instances, their ``map_expand``/``map_done``
            lines that a fault excused for missing, instances among the recoveries and
            retries.
    """

    seed: int
    failures: list[str] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    retry_lateness: list[float] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    runs: dict[str, int] = field(default_factory=dict)
    rerun_steps: int = 0
    extra_executions: int = 0
    runs_per_min: float = 0.0
    run_seconds: list[float] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    maps: Counter[str] = field(default_factory=Counter)

    def failed(self, check: str) -> list[str]:
        """The failure lines of one check."""
        return [f for f in self.failures if f.startswith(check + ":")]

    def recovery_rows(self) -> list[tuple[str, int, float, float, int]]:
        """``(kind / what, n, p50 s, max s, late)`` per kind of recovery, in a fixed order."""
        groups: dict[str, list[Recovery]] = defaultdict(list)
        for r in self.recoveries:
            groups[f"{r.kind} / {r.what}"].append(r)
        rows = []
        for key in sorted(groups):
            secs = [r.seconds for r in groups[key]]
            finite = [s for s in secs if math.isfinite(s)] or [math.nan]
            late = sum(r.late for r in groups[key])
            rows.append((key, len(secs), statistics.median(finite), max(secs), late))
        return rows

    def summary(self) -> str:
        """A compact text report: faults, runs, recoveries, failures (for assertion messages)."""
        lines = [
            f"chaos seed {self.seed} (replay: DAGFLOW_CHAOS_SEED={self.seed})",
            "faults: " + ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())),
            "runs: " + ", ".join(f"{k} {n}" for k, n in self.runs.items()),
            "maps: " + ", ".join(f"{k} {n}" for k, n in sorted(self.maps.items())),
            f"steps run more than once: {self.rerun_steps} ({self.extra_executions} extra starts)",
            "recovery (s from the fault, or from a held retry's due time if later):",
        ]
        for key, n, p50, worst, late in self.recovery_rows():
            lines.append(f"  {key}: n {n}, p50 {p50:.2f}, max {worst:.2f}, late {late}")
        if self.retry_lateness:
            lines.append(
                f"every retry, start - due: n {len(self.retry_lateness)}, p50 "
                f"{statistics.median(self.retry_lateness):.2f}, max {max(self.retry_lateness):.2f}"
            )
        lines += [f"worker exit: {e}" for e in self.exits]
        # The harness's own trouble (a worker not ready in time, a collector that exited)
        # is not a check, but a reader of a failure must see it.
        lines += [f"harness: {n}" for n in self.notes if "did not start" in n or "exited" in n]
        lines += [f"FAILED {f}" for f in self.failures[:40]]
        if len(self.failures) > 40:
            lines.append(f"... and {len(self.failures) - 40} more failures")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading


def read_spans(path: Path) -> list[Span]:
    """Each execution of ``test.chaos`` from its spans file (missing file: none)."""
    first: dict[tuple[str, str, int, int], float] = {}
    last: dict[tuple[str, str, int, int], float] = {}
    ended: set[tuple[str, str, int, int]] = set()
    if not path.exists():
        return []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line torn by a SIGKILL mid-write
        kind, run_id, task_id, fence, pid, at = parts
        key = (run_id, task_id, int(fence), int(pid))
        first.setdefault(key, float(at))
        last[key] = float(at)
        if kind == "end":
            ended.add(key)
    return [Span(*k, first[k], last[k], k in ended) for k in first]


def received_lines(log: Path) -> list[tuple[float, str]]:
    """``(epoch seconds, task name)`` of each ``Task <name>[id] received`` in a worker log.

    Celery stamps its log in local time; ``datetime.timestamp`` of a naive value reads it as
    local time too, so the result compares with the event log's UTC stamps.
    """
    if not log.exists():
        return []
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = _RECEIVED.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((when, m.group(2)))
    return out


# --------------------------------------------------------------------------- analysis


class _Timeline:
    """When Redis was down and when each worker could run steps (ready, not frozen, alive)."""

    def __init__(self, faults: Sequence[Fault], lives: Sequence[WorkerLife], end: float) -> None:
        self.end = end
        self.redis_down = [(f.at, f.until or end) for f in faults if f.kind == "redis_kill"]
        frozen: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for f in faults:
            if f.kind == "freeze":
                frozen[f.target].append((f.at, f.until or end))
        self.lives = [(w.node, w.ready_at, w.ended_at or end) for w in lives]
        self.frozen = frozen

    def blocked(self, t: float) -> bool:
        if any(a <= t < b for a, b in self.redis_down):
            return True
        for node, ready, ended in self.lives:
            if ready <= t < ended and not any(a <= t < b for a, b in self.frozen.get(node, [])):
                return False
        return True

    def blocked_time(self, start: float, stop: float) -> float:
        """Seconds in ``[start, stop)`` when Redis was down or no worker could run a step."""
        n = max(0, int((stop - start) / BLOCKED_STEP_S))
        return sum(self.blocked(start + i * BLOCKED_STEP_S) for i in range(n)) * BLOCKED_STEP_S

    def deadline(self, anchor: float, bound: float) -> float:
        """``anchor + bound`` pushed back by the blocked time inside it (a fixpoint)."""
        deadline = anchor + bound
        for _ in range(5):
            extended = anchor + bound + self.blocked_time(anchor, deadline)
            if extended <= deadline + BLOCKED_STEP_S:
                return extended
            deadline = extended
        return deadline


def analyse(obs: Observations) -> ChaosReport:
    """Every check of the module docstring, on one run's observations."""
    cfg = obs.config
    report = ChaosReport(seed=cfg.seed, notes=list(obs.harness_notes))
    bound = cfg.lease_s + cfg.sweep_s
    report.faults = Counter(f.kind for f in obs.faults)
    events = [e for e in obs.events if e.get("run_id")]
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_run[e["run_id"]].append(e)
    known = [s for s in obs.submissions if s.run_id in by_run or s.error is None]
    fail = report.failures.append

    # Runs: ended success, once; outputs right; one task_ok per task.
    succeeded = 0
    for sub in known:
        run_events = by_run.get(sub.run_id, [])
        done = [e for e in run_events if e["event"] == "dag_done"]
        statuses = [e.get("status") for e in done]
        if statuses != ["success"]:
            why = obs.not_ended.get(sub.run_id)
            still = f" (still {why} after the drain)" if why else ""
            fail(f"run ended success once: {sub.dag_name} {sub.run_id}: dag_done {statuses}{still}")
        else:
            succeeded += 1
            report.run_seconds.append(float(done[0].get("duration_s") or 0.0))
        oks = Counter(e["task_id"] for e in run_events if e["event"] == "task_ok")
        # A mapped task ends through its instances (``each[3]``): it has no task_ok itself.
        steps = {t for t in sub.expected if t not in sub.mapped}
        wrong = {t: n for t in sorted(steps | set(oks)) if (n := oks.get(t, 0)) != (t in steps)}
        if wrong:
            fail(f"one task_ok per task: {sub.dag_name} {sub.run_id}: {wrong}")
        got = obs.outputs.get(sub.run_id, {})
        bad = {t: (got.get(t), want) for t, want in sub.expected.items() if got.get(t) != want}
        if bad and statuses == ["success"]:
            task_id, (have, want) = sorted(bad.items())[0]
            fail(
                f"outputs right: {sub.dag_name} {sub.run_id}: {len(bad)} wrong, e.g. {task_id} "
                f"{have} != {want}"
            )
        for task_id, mapped in sub.mapped.items():
            problems = _map_lines(task_id, mapped, run_events)
            report.maps["mapped tasks"] += 1
            report.maps["instances"] += mapped.instances
            for problem in problems:
                fail(f"each map expands once: {sub.dag_name} {sub.run_id}/{task_id}: {problem}")
    refused = len(obs.submissions) - len(known)
    # From the first run's end (the load's warm-up is one run time long) to the end of the
    # load window: with a steady load, a system that keeps up ends runs at the submit rate.
    ends = sorted(
        event_time(e)
        for s in known
        for e in by_run.get(s.run_id, [])
        if e["event"] == "dag_done" and e.get("status") == "success"
    )
    in_window = [t for t in ends if t <= obs.chaos_ended_at]
    if len(in_window) > 1:
        report.runs_per_min = (len(in_window) - 1) / ((in_window[-1] - in_window[0]) / 60)
    report.runs = {
        "submitted": len(obs.submissions),
        "refused at submit": refused,
        "succeeded": succeeded,
        "not ended by the drain": len(obs.not_ended),
    }

    executions, by_step = _executions(events)
    timeline = _Timeline(obs.faults, obs.lives, obs.drained_at + 3600)
    spans = read_spans(obs.spans_path)
    dag_of = {s.run_id: s.dag_name for s in obs.submissions}

    # Steps run more than once (not retries: several fences for one attempt).
    for execs in by_step.values():
        extra = len({x.fence for x in execs}) - len({x.attempt for x in execs})
        if extra > 0:
            report.rerun_steps += 1
            report.extra_executions += extra

    # Overlaps.
    for problem in _overlaps(spans, executions, obs.faults, cfg.lease_s):
        fail(f"no overlapping executions: {problem}")

    # Worker exits.
    for f in obs.faults:
        if f.kind == WORKER_EXIT:
            line = f"{f.target} at +{f.at - obs.started_at:.1f} s: {f.detail}"
            report.exits.append(line)
            fail(f"no worker exited on its own: {line}")

    # Recoveries.
    logs = {life.node: received_lines(life.log) for life in obs.lives}
    retries = _retry_times(events)
    for fault in obs.faults:
        report.recoveries += _recoveries(
            fault, executions, by_step, spans, logs, dag_of, timeline, bound, retries
        )
    report.maps["instances taken by a fault"] = sum(
        split_instance(r.task_id)[1] is not None for r in report.recoveries
    )
    for r in report.recoveries:
        if r.late:
            moved = "never" if r.recovered_at is None else f"{r.seconds:.1f} s after the anchor"
            fail(
                f"recovery within the bound: {r.kind} at +{r.fault_at - obs.started_at:.1f} s, "
                f"{r.what} {dag_of.get(r.run_id, r.run_id)}/{r.task_id}: moved {moved}, "
                f"deadline was {r.deadline - r.anchor:.1f} s ({r.how})"
            )
        taken = r.recovered_at is not None and r.how != "its holder ended it"
        if r.kind == "client_kill" and taken and not _confounded(r, obs.faults, obs.config.lease_s):
            fail(
                f"a blip keeps steps with their holder: at +{r.fault_at - obs.started_at:.1f} s"
                f" {dag_of.get(r.run_id, r.run_id)}/{r.task_id}: {r.how}"
            )

    # Every retry, whoever held it.
    for e in events:
        if e["event"] != "task_retry":
            continue
        due = event_time(e) + float(e.get("delay_s") or 0.0)
        nxt = _next_start(by_step[(e["run_id"], e["task_id"])], int(e["attempt"]) + 1)
        deadline = timeline.deadline(due, bound + SLACK_S)
        if nxt is not None:
            report.retry_lateness.append(nxt - due)
        if split_instance(e["task_id"])[1] is not None:
            report.maps["instance retries"] += 1
        if nxt is None or nxt > deadline:
            late = "never" if nxt is None else f"{nxt - due:.1f} s after due"
            fail(
                f"every retry by due + lease + sweep: {dag_of.get(e['run_id'])}/{e['task_id']} "
                f"attempt {int(e['attempt']) + 1} started {late} (allowed {deadline - due:.1f} s)"
            )

    if obs.collector_check:
        fail(f"collector wrote every event once: {obs.collector_check}")
    return report


def _map_lines(task_id: str, mapped: Mapped, run_events: Sequence[dict[str, Any]]) -> list[str]:
    """What is wrong with one mapped task's ``map_expand`` and ``map_done`` lines.

    Exactly one ``map_expand`` with the right ``instances`` once its parent's ``task_ok`` is
    in, and one ``map_done`` ``success`` once every instance's is; never two. The finish
    script appends them in the commit that expands or ends the task, right after that
    commit's ``task_ok``, so no fault excuses a missing one.
    """
    prefix = f"{task_id}["
    ok = [e for e in run_events if e["event"] == "task_ok"]
    parent_ok = any(e["task_id"] == mapped.parent for e in ok)
    instances_ok = {e["task_id"] for e in ok if str(e["task_id"]).startswith(prefix)}
    expands = [
        e.get("instances")
        for e in run_events
        if e["event"] == "map_expand" and e.get("task_id") == task_id
    ]
    dones = [
        e.get("status")
        for e in run_events
        if e["event"] == "map_done" and e.get("task_id") == task_id
    ]
    problems: list[str] = []
    if len(expands) > 1 or any(n != mapped.instances for n in expands):
        problems.append(f"map_expand instances {expands}, want [{mapped.instances}]")
    elif not expands and parent_ok:
        problems.append(f"no map_expand after {mapped.parent}'s task_ok")
    if len(dones) > 1 or any(d != "success" for d in dones):
        problems.append(f"map_done statuses {dones}, want ['success']")
    elif not dones and len(instances_ok) == mapped.instances:
        problems.append("no map_done after its last instance's task_ok")
    return problems


def _executions(
    events: Iterable[dict[str, Any]],
) -> tuple[dict[tuple[str, str, int], Execution], dict[tuple[str, str], list[Execution]]]:
    starts: dict[tuple[str, str, int], dict[str, Any]] = {}
    ends: dict[tuple[str, str, int], float] = {}
    for e in events:
        if e["event"] == "task_start" and e.get("fence") is not None:
            starts.setdefault((e["run_id"], e["task_id"], int(e["fence"])), e)
        elif e["event"] in END_EVENTS and e.get("fence") is not None:
            ends.setdefault((e["run_id"], e["task_id"], int(e["fence"])), event_time(e))
    executions = {
        key: Execution(
            key[0],
            key[1],
            key[2],
            int(e.get("attempt") or 1),
            str(e.get("worker") or ""),
            event_time(e),
            ends.get(key),
        )
        for key, e in starts.items()
    }
    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for x in sorted(executions.values(), key=lambda x: (x.start, x.fence)):
        by_step[(x.run_id, x.task_id)].append(x)
    for execs in by_step.values():
        for i, x in enumerate(execs):
            later = [y.start for y in execs[i + 1 :] if y.fence > x.fence]
            if later:
                execs[i] = executions[(x.run_id, x.task_id, x.fence)] = replace(
                    x, superseded=min(later)
                )
    return executions, by_step


def _next_start(execs: Sequence[Execution], attempt: int) -> float | None:
    return min((x.start for x in execs if x.attempt >= attempt), default=None)


def _progress(x: Execution, execs: Sequence[Execution], after: float) -> tuple[float | None, str]:
    """When the step of execution ``x`` moved after ``after``: a new holder, or x's own end."""
    later = [y for y in execs if y.fence > x.fence and y.start > after]
    takeover = min(later, key=lambda y: y.start) if later else None
    own = x.end if x.end is not None and x.end > after else None
    if own is not None and (takeover is None or own <= takeover.start):
        return own, "its holder ended it"
    if takeover is not None:
        return takeover.start, f"fence {takeover.fence} started on {takeover.worker.split('@')[0]}"
    return None, "nothing moved it"


def _recoveries(
    fault: Fault,
    executions: dict[tuple[str, str, int], Execution],
    by_step: dict[tuple[str, str], list[Execution]],
    spans: Sequence[Span],
    logs: dict[str, list[tuple[float, str]]],
    dag_of: dict[str, str],
    timeline: _Timeline,
    bound: float,
    retries: dict[tuple[str, str, int], tuple[float, float]],
) -> list[Recovery]:
    """The steps ``fault`` took from their holders, and when each moved again."""
    t = fault.at
    kind = fault.kind
    out: list[Recovery] = []

    def running(holder: str | None) -> list[Execution]:
        return [
            x
            for x in executions.values()
            if (holder is None or x.worker == holder)
            and x.start <= t
            and (x.released is None or x.released > t)
        ]

    def add_running(xs: Iterable[Execution], anchor: float, limit: float) -> None:
        for x in xs:
            at, how = _progress(x, by_step[(x.run_id, x.task_id)], t)
            deadline = timeline.deadline(anchor, limit + SLACK_S)
            out.append(
                Recovery(
                    kind,
                    "running step",
                    x.run_id,
                    x.task_id,
                    t,
                    anchor,
                    deadline,
                    at,
                    how,
                    x.worker,
                )
            )

    def add_retries(holder: str | None, after: float) -> None:
        for (run_id, task_id), execs in by_step.items():
            for x in execs:
                if x.end is None or x.end > t:
                    continue
                retry_due = retries.get((x.run_id, x.task_id, x.fence))
                if retry_due is None:
                    continue
                retried_at, due = retry_due
                nxt = _next_start(execs, x.attempt + 1)
                if nxt is not None and nxt <= t:
                    continue  # already running again before the fault
                if holder is not None:
                    shadow = f"{dag_of.get(run_id)}:{task_id}"
                    got = logs.get(holder, [])
                    if not any(retried_at - 0.01 <= w <= t and n == shadow for w, n in got):
                        continue  # another worker holds this retry
                anchor = max(due, after)
                deadline = timeline.deadline(anchor, bound + SLACK_S)
                how = "retry started" if nxt is not None else "the retry never started"
                out.append(
                    Recovery(
                        kind, "held retry", run_id, task_id, t, anchor, deadline, nxt, how, holder
                    )
                )

    if kind in ("worker_kill", WORKER_EXIT, "freeze"):
        add_running(running(fault.target), t, bound)
        add_retries(fault.target, t)
    elif kind == "pool_kill":
        open_spans = [
            s
            for s in spans
            if s.pid == fault.pid and s.first <= t and not (s.ended and s.last <= t)
        ]
        if open_spans:
            s = max(open_spans, key=lambda s: s.first)
            x = executions.get((s.run_id, s.task_id, s.fence))
            if x is not None:
                add_running([x], t, POOL_KILL_S)
    elif kind == "redis_kill":
        # Measured from the kill: the deadline is pushed back by the time Redis was down.
        # (An end event's time is stamped when the workflow returned, possibly while Redis
        # was down and before the commit that followed its restart.)
        add_running(running(None), t, bound)
        add_retries(None, t)
    elif kind == "client_kill":
        add_running(running(None), t, bound)
    return out


def _retry_times(
    events: Iterable[dict[str, Any]],
) -> dict[tuple[str, str, int], tuple[float, float]]:
    """``(task_retry time, due time)`` of each execution that ended with a retry."""
    out = {}
    for e in events:
        if e["event"] == "task_retry" and e.get("fence") is not None:
            at = event_time(e)
            key = (e["run_id"], e["task_id"], int(e["fence"]))
            out[key] = (at, at + float(e.get("delay_s") or 0.0))
    return out


def _confounded(r: Recovery, faults: Sequence[Fault], lease_s: float) -> bool:
    """Another fault could have taken the step: a Redis kill, or a kill or freeze of the
    step's holder (any worker's when the holder is not known), whose effect overlaps the
    time from the blip to the step's move. A holder killed or frozen up to a lease before
    the blip still loses its leases after it, so each fault's effect lasts a lease longer."""
    end = r.recovered_at or r.deadline
    return any(
        f.kind in ("worker_kill", WORKER_EXIT, "freeze", "pool_kill", "redis_kill")
        and (f.kind == "redis_kill" or r.holder is None or r.holder in f.target)
        and f.at <= end
        and (f.until if f.until is not None else f.at) + lease_s >= r.fault_at - 0.5
        for f in faults
    )


def _overlaps(
    spans: Sequence[Span],
    executions: dict[tuple[str, str, int], Execution],
    faults: Sequence[Fault],
    lease_s: float,
) -> list[str]:
    """Pairs of executions of one step alive at once that no lost lease explains."""
    by_step: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for s in spans:
        by_step[(s.run_id, s.task_id)].append(s)
    problems = []
    for (run_id, task_id), group in by_step.items():
        group.sort(key=lambda s: s.first)
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if b.first >= a.last:
                    continue
                x = executions.get((run_id, task_id, a.fence))
                holder = x.worker if x else "?"
                if _lease_lost_by(holder, a.first, b.first, faults, lease_s):
                    continue
                problems.append(
                    f"{run_id}/{task_id}: fence {a.fence} on {holder} alive "
                    f"{a.first:.2f}-{a.last:.2f}, fence {b.fence} started {b.first:.2f}"
                )
    return problems


def _lease_lost_by(
    holder: str, start: float, taken: float, faults: Sequence[Fault], lease_s: float
) -> bool:
    """The holder could have lost its lease between ``start`` and ``taken``: it was frozen
    long enough, Redis was down, or its worker died (its pool process may linger)."""
    for f in faults:
        until = f.until if f.until is not None else math.inf
        overlaps = f.at <= taken and until >= start
        long_enough = until - f.at >= FROZEN_LEASES_TO_LOSE * lease_s
        if f.kind == "freeze" and f.target == holder and overlaps and long_enough:
            return True
        if f.kind == "redis_kill" and overlaps:
            return True
        if f.kind == WORKER_EXIT and f.target == holder and f.at <= taken + 1:
            return True
    return False
