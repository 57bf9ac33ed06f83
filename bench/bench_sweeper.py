"""What the sweeper's look at the broker costs: the queue's backlog, and the held steps.

Not a test: run it by hand and paste the table into ``bench/README.md``::

    python bench/bench_sweeper.py

While the step queue has a backlog and outbox entries are due, each sweep reads kombu's
``unacked`` hash (:func:`dagflow.execution.broker_queue.look`) to find the steps a worker holds
without running them. This measures one look against a private ``redis-server``
(``BENCH_REDIS=redis://host:port`` uses an existing one; database 12 is flushed) with a
backlog of 1,000 step messages and 0 to 1,000 held ones, against the backlog-only look the
sweeper made before (``held=False``). A deployment of W workers with -c C holds about W x C
messages, plus one per retry waiting for its ETA.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.redis_service import redis_base
from dagflow.celery_app import make_app
from dagflow.execution import broker_queue
from dagflow.execution.message import Sender, step_message
from dagflow.settings import Settings

DB = 12
REPEAT = 200
BACKLOG = 1000
SENDER = Sender("celery", (None, None), True)


def _fill(client: redis.Redis, held: int) -> None:
    client.flushdb()
    queued = [
        step_message(SENDER, "run", f"q{i}", "d:q", origin="o", reply_to="r")
        for i in range(BACKLOG)
    ]
    client.lpush("celery", *queued)
    for i in range(held):
        message = json.loads(step_message(SENDER, "run", f"h{i}", "d:h", origin="o", reply_to="r"))
        client.hset("unacked", f"tag{i}", json.dumps([message, "", "celery"]))


def _p50_ms(app: object, held: bool) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        broker_queue.look(app, held=held)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    url = f"{redis_base()}/{DB}"
    client = redis.Redis.from_url(url)
    app = make_app(Settings(broker_url=url, result_backend=url))
    print(
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(f"One look with {BACKLOG} messages queued, p50 of {REPEAT}:\n")
    print("| held messages | backlog only (ms) | backlog + held steps (ms) | extra (ms) |")
    print("|---:|---:|---:|---:|")
    for held in (0, 6, 60, 1000):
        _fill(client, held)
        before = _p50_ms(app, held=False)
        after = _p50_ms(app, held=True)
        print(f"| {held:,} | {before:.2f} | {after:.2f} | {after - before:+.2f} |")
        assert broker_queue.look(app).held is not None
    client.flushdb()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
