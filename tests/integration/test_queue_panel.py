"""The dashboard's queue panel against the Redis a real worker used."""

from __future__ import annotations

import json

import pytest
import redis

from dagflow.client.runner import Runner
from dagflow.keys import is_dagflow_key
from dagflow.stores.queue_stats import redis_queue_stats
from tests.support.dags import make_dag, task
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_pending_is_zero_after_finished_runs(redis_runner: Runner, redis_db: str) -> None:
    # Given finished runs on the session worker (each leaves dagflow's own keys, lists too)
    for width in (1, 5):
        dag = make_dag([task("root"), *(task(f"m{i}", deps=("root",)) for i in range(width))])
        assert redis_runner.submit(dag).wait(timeout=60).status == "success"
    client = redis.Redis.from_url(redis_db, decode_responses=True)
    try:
        # and an empty Celery queue
        wait_for(lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0)
        lists = [k for k in client.scan_iter(_type="list")]
        assert any(is_dagflow_key(k) for k in lists), lists  # the panel must skip these
    finally:
        client.close()
    # When the panel counts, Then nothing is pending
    stats = redis_queue_stats(redis_db, redis_db)
    assert stats.error is None
    assert stats.pending == 0, stats.queues


def test_queue_stats_from_a_real_redis(scratch_redis: str) -> None:
    redis_url = scratch_redis
    # Given two queues (one with a priority level), a hash and three task results
    client = redis.Redis.from_url(redis_url)
    client.rpush("celery", "m1", "m2")
    client.rpush("celery\x06\x163", "m3")
    client.rpush("reports", "m4")
    client.hset("unacked", "tag", "x")
    for n, state in enumerate(["SUCCESS", "SUCCESS", "FAILURE"]):
        client.set(f"celery-task-meta-{n}", json.dumps({"status": state}))

    stats = redis_queue_stats(redis_url, redis_url)

    assert stats.error is None
    assert stats.queues == {"celery": 3, "reports": 1}
    assert (stats.pending, stats.results, stats.truncated) == (
        4,
        {"SUCCESS": 2, "FAILURE": 1},
        False,
    )
