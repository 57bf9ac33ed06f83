"""Scheduler benchmarks: one tick over 10,000 schedules, and how late a firing is.

Run from the repository root::

    python bench/bench_scheduler.py

It starts its own ``redis-server`` on a free port for the Redis claims
(``BENCH_REDIS=redis://host:port`` uses an existing server instead; database 6 of it is
flushed before and after).

Targets: a tick over 10,000 schedules under 50 ms; a firing under 1 s after its minute
starts at the default tick (SCHED_TICK_MS=1000).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_service import redis_base
from dagflow.events.state_store import JsonlStateStore
from dagflow.scheduling.cron import floor_minute
from dagflow.scheduling.firing import Firing
from dagflow.scheduling.schedule_dir import ScheduleDir
from dagflow.scheduling.ticker import Clock, Ticker, serve
from dagflow.stores.minute_claims import MemoryMinuteClaims, MinuteClaims, RedisMinuteClaims

N = 10_000
DB = 6
CRONS = ["*/5 * * * *", "0 9 * * mon-fri", "*/15 * * * *", "30 2 * * *", "0 */2 * * *"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]


def write_root(root: Path) -> None:
    (root / "dags").mkdir()
    (root / "dags" / "d.yaml").write_text("name: d\ntenant_id: t\ntasks: []\n")
    (root / "schedules").mkdir()
    for part in range(10):
        lines = []
        for i in range(part * N // 10, (part + 1) * N // 10):
            lines.append(
                f'- id: s{i}\n  cron: "{CRONS[i % len(CRONS)]}"\n  dag: dags/d.yaml\n'
                f"  tenant: t{i % 7}\n  timezone: {ZONES[i % len(ZONES)]}\n"
            )
        (root / "schedules" / f"part{part}.yaml").write_text("".join(lines))


def time_ms(fn: object, repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_ticks(root: Path, claims_name: str, claims: MinuteClaims) -> list[tuple[str, str, str]]:
    rows = []
    directory = ScheduleDir(root / "schedules", root)
    start = time.perf_counter()
    directory.refresh()
    load_ms = (time.perf_counter() - start) * 1000
    state = JsonlStateStore(root / f"state-{claims_name}.jsonl")
    ticker = Ticker(directory, claims, state)
    base = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # */5 and */15 and */2h all due
    ticker.tick(base - timedelta(minutes=1))
    boundary, due_counts = [], []
    for k in range(8):
        minute = base + timedelta(minutes=5 * k)
        ticker.tick(minute - timedelta(seconds=1))  # the minute before, already processed
        start = time.perf_counter()
        due_counts.append(len(ticker.tick(minute)))
        boundary.append((time.perf_counter() - start) * 1000)
    inside = time_ms(lambda: ticker.tick(base + timedelta(minutes=20, seconds=30)))
    quiet_minute = base + timedelta(minutes=21)
    start = time.perf_counter()
    quiet_due = len(ticker.tick(quiet_minute))
    quiet = (time.perf_counter() - start) * 1000
    rows.append((f"load {N} schedules (10 files)", claims_name, f"{load_ms:.0f} ms"))
    by_count: dict[int, list[float]] = {}
    for count, ms in zip(due_counts, boundary, strict=True):
        by_count.setdefault(count, []).append(ms)
    for count in sorted(by_count):
        times = by_count[count]
        rows.append(
            (
                f"tick at a minute boundary, {count} due ({len(times)} ticks)",
                claims_name,
                f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms",
            )
        )
    rows.append((f"tick at a minute boundary, {quiet_due} due", claims_name, f"{quiet:.1f} ms"))
    rows.append(
        ("tick inside a minute (already done)", claims_name, f"{statistics.median(inside):.2f} ms")
    )
    return rows


def bench_lateness(root: Path, speed: float = 20.0, boundaries: int = 4) -> tuple[str, str, str]:
    """Serve with the default 1 s tick on a fast clock; lateness reported in real seconds."""
    (root / "lat").mkdir()
    (root / "lat" / "every.yaml").write_text(
        '- id: every\n  cron: "* * * * *"\n  dag: dags/d.yaml\n  tenant: t\n'
    )
    start = datetime.now(UTC).replace(second=50, microsecond=0)
    clock = Clock(start, speed)
    ticker = Ticker(
        ScheduleDir(root / "lat", root), MemoryMinuteClaims(), JsonlStateStore(root / "l")
    )
    stop = threading.Event()
    late: list[float] = []

    def enqueue(firing: Firing) -> None:
        now = clock.now()
        late.append((now - floor_minute(now)).total_seconds() / speed)
        if len(late) > boundaries:
            stop.set()

    serve(ticker, clock, 1.0, stop, enqueue)
    late = late[1:]  # the first firing is the start minute, not a boundary
    return (
        f"firing lateness after the minute starts ({len(late)} boundaries)",
        "memory",
        f"median {statistics.median(late) * 1000:.1f} ms, max {max(late) * 1000:.1f} ms",
    )


def main() -> None:
    client = redis.Redis.from_url(f"{redis_base()}/{DB}", decode_responses=True)
    client.flushdb()
    rows: list[tuple[str, str, str]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_root(root)
            rows += bench_ticks(root, "memory", MemoryMinuteClaims())
            rows += bench_ticks(root, "redis", RedisMinuteClaims(client))
            rows.append(bench_lateness(root))
    finally:
        client.flushdb()
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | claims | result |")
    print(f"|{'-' * (width + 2)}|--------|--------|")
    for name, claims, result in rows:
        print(f"| {name:<{width}} | {claims:<6} | {result} |")


if __name__ == "__main__":
    main()
