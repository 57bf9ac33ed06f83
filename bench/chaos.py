"""Chaos benchmark: throughput and recovery of a steady DAG load while things break.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/chaos.py                       # 2 min baseline + 10 min of chaos
    python bench/chaos.py --minutes 3 --baseline-minutes 1 --seed 7

It uses the harness of ``tests/integration/test_chaos.py`` (:mod:`tests.support.chaos`): a
private ``redis-server`` per phase (AOF ``appendfsync always``, a free port, a temporary
folder), ``--workers`` real ``celery -A dagflow worker`` processes ``-c --concurrency``, the
event collector, a 25-task DAG (fan-outs, joins, two flaky tasks, payload passing; every
other run also maps over 4-6 items and joins them) every ``--every`` seconds. First a
**baseline**: the same load without faults, to get runs/min and run times without chaos;
then the **chaos** run: a fault every 3-6 s (whole-worker SIGKILL, pool-process SIGKILL,
SIGSTOP of a worker for 0.5-2.5 leases, Redis SIGKILL and restart 1-4 s later, ``CLIENT
KILL TYPE normal``, collector SIGKILL). Both are judged by
:func:`tests.support.chaos_analysis.analyse`; the script prints markdown tables and the
failed checks, and exits 0 either way (it measures, it does not gate).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.chaos import FAULT_KINDS, SLACK_S, ChaosConfig, ChaosRun
from tests.support.chaos_analysis import ChaosReport, analyse


def machine(config: ChaosConfig) -> list[str]:
    """What the numbers were measured on (the shared box is noisy: say how busy it was)."""

    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    import celery
    import kombu
    import redis

    model = sh("lscpu | grep 'Model name' | sed 's/.*: *//'")
    server = sh("redis-server --version | sed 's/.*v=\\([^ ]*\\).*/\\1/'")
    return [
        f"- CPU: {os.cpu_count()} cores, {model}; load average at start: {os.getloadavg()[0]:.2f}",
        f"- Python {platform.python_version()}, celery {celery.__version__}, kombu "
        f"{kombu.__version__}, redis-py {redis.__version__}, redis-server {server}",
        f"- {platform.platform()}",
        f"- {config.workers} workers prefork -c {config.concurrency}, DAGFLOW_LEASE_S="
        f"{config.lease_s:g}, DAGFLOW_SWEEP_S={config.sweep_s:g}, retries after "
        f"{config.retry_base_s:g} s then {2 * config.retry_base_s:g} s; a 25-task DAG (every "
        f"other one with a map of 4-6) every "
        f"{config.submit_every_s:g} s; a fault every {config.fault_every_s[0]:g}-"
        f"{config.fault_every_s[1]:g} s; recovery slack {SLACK_S:g} s",
    ]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tables(baseline: ChaosReport | None, chaos: ChaosReport, minutes: float) -> list[str]:
    """The markdown tables of one benchmark."""
    out = ["| | baseline (no faults) | chaos |", "|---|---:|---:|"]

    def both(label: str, get: Callable[[ChaosReport], object]) -> None:
        left = get(baseline) if baseline is not None else "n/a"
        out.append(f"| {label} | {left} | {get(chaos)} |")

    both("runs submitted", lambda r: r.runs["submitted"])
    both("refused at submit (Redis down)", lambda r: r.runs["refused at submit"])
    both("runs ended success", lambda r: r.runs["succeeded"])
    both("runs not ended after the drain", lambda r: r.runs["not ended by the drain"])
    both("runs/min ended success (load window, after the first)", lambda r: f"{r.runs_per_min:.1f}")
    both("run time p50 / p95 / max s", _run_times)
    both(
        "steps run more than once (extra starts)",
        lambda r: f"{r.rerun_steps} ({r.extra_executions})",
    )
    both(
        "mapped tasks (instances; taken by a fault)",
        lambda r: (
            f"{r.maps['mapped tasks']} ({r.maps['instances']}; "
            f"{r.maps['instances taken by a fault']})"
        ),
    )
    both("worker exits (not killed by the harness)", lambda r: len(r.exits))
    both(
        "retry start - due p50 / max s",
        lambda r: (
            f"{statistics.median(r.retry_lateness):.2f} / {max(r.retry_lateness):.2f}"
            if r.retry_lateness
            else "n/a"
        ),
    )
    both("failed checks", lambda r: len(r.failures))
    out += ["", f"Faults injected in {minutes:g} min of chaos:", ""]
    out += ["| fault | count |", "|---|---:|"]
    for kind in (*FAULT_KINDS, "worker_exit"):
        out.append(f"| {kind} | {chaos.faults.get(kind, 0)} |")
    out += [
        "",
        "Recovery under chaos (s from the fault, or from a held retry's due time if later;"
        " `late` = past the README's bound + slack + time blocked):",
        "",
        "| fault / what it held | n | p50 s | max s | late |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, n, p50, worst, late in chaos.recovery_rows():
        worst_s = "never" if math.isinf(worst) else f"{worst:.2f}"
        out.append(f"| {key} | {n} | {p50:.2f} | {worst_s} | {late} |")
    return out


def _run_times(r: ChaosReport) -> str:
    secs = r.run_seconds
    if not secs:
        return "n/a"
    return f"{statistics.median(secs):.1f} / {_pct(secs, 0.95):.1f} / {max(secs):.1f}"


def failures_by_check(report: ChaosReport) -> list[str]:
    """One line per failed check: how many, and the first example."""
    first: dict[str, tuple[int, str]] = {}
    for line in report.failures:
        check, _, rest = line.partition(": ")
        n, example = first.get(check, (0, rest))
        first[check] = (n + 1, example)
    return [f"- {check}: {n}, e.g. {ex[:240]}" for check, (n, ex) in first.items()]


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and the chaos phase, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="chaos window")
    parser.add_argument("--baseline-minutes", type=float, default=2.0, help="0 skips it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="pool size (-c)")
    parser.add_argument("--lease", type=float, default=3.0, help="DAGFLOW_LEASE_S")
    parser.add_argument("--sweep", type=float, default=0.5, help="DAGFLOW_SWEEP_S")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between two runs")
    parser.add_argument("--keep", action="store_true", help="keep logs, spans and Redis data")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        seed=args.seed,
        duration_s=args.minutes * 60,
        workers=args.workers,
        concurrency=args.concurrency,
        lease_s=args.lease,
        sweep_s=args.sweep,
        submit_every_s=args.every,
        drain_timeout_s=120.0,
    )
    tmp = Path(tempfile.mkdtemp(prefix="dagflow-bench-chaos-"))
    started = time.perf_counter()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    about = machine(config)
    try:
        baseline = None
        if args.baseline_minutes > 0:
            quiet = replace(config, faults=(), duration_s=args.baseline_minutes * 60)
            baseline = analyse(ChaosRun(tmp / "baseline", quiet).run())
        chaos = analyse(ChaosRun(tmp / "chaos", config).run())
    finally:
        if args.keep:
            print(f"[bench] logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"Chaos benchmark, {when}: `python bench/chaos.py {' '.join(argv or sys.argv[1:])}`")
    print()
    print("Machine:")
    print()
    print("\n".join(about))
    print()
    print(
        f"Baseline: {args.baseline_minutes:g} min of the same load without faults; chaos: "
        f"{args.minutes:g} min, seed {args.seed}; then each drains (bounded) before it is judged."
    )
    print()
    print("\n".join(tables(baseline, chaos, args.minutes)))
    print()
    print("Failed checks under chaos (see tests/support/chaos_analysis.py):")
    print()
    print("\n".join(failures_by_check(chaos)) or "- none")
    if baseline is not None and baseline.failures:
        print()
        print("Failed checks without faults:")
        print()
        print("\n".join(failures_by_check(baseline)))
    print()
    print(
        f"Total benchmark time: {time.perf_counter() - started:.0f} s; load average at the "
        f"end {os.getloadavg()[0]:.2f}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
