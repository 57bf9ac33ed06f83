"""Contract of the notify outbox and run deadlines, for both run stores (memory and Redis).

See :mod:`dagflow.stores.notifications`: notices are written with ``mark_done``, held for
their writer, claimed by a sweeper when due, re-armed after a failure and settled once; a
missed deadline is claimed by exactly one caller while the run is open.
"""

from __future__ import annotations

import threading
import time

import pytest

from dagflow.stores import RunStore
from dagflow.stores.notifications import Notice, NoticeBatch

pytestmark = pytest.mark.integration

IDS = ("failed:on_failure:page", "failed:webhook:SLACK")


def _run(store: RunStore, run_id: str = "r1", **meta: object) -> None:
    base = {"dag_name": "d", "tenant_id": "t", "started_at": time.time()}
    store.create_run(run_id, '{"version":3}', {**base, **meta}, ["a"])


def test_notices_are_written_with_mark_done_and_held_for_their_writer(store: RunStore) -> None:
    # Given a run that ends with two notices held for 30 s
    _run(store)
    store.mark_done("r1", "failed", {}, notices=NoticeBatch(IDS, hold_s=30))
    # Then they are pending, and no sweeper may claim them yet
    assert [(n.notice_id, n.state) for n in store.notices("r1")] == [
        (IDS[0], "pending"),
        (IDS[1], "pending"),
    ]
    assert store.claim_notices(10, lease_s=5) == []
    # When the writer delivers one, it is settled as sent
    store.settle_notice(Notice("r1", IDS[0]), sent=True)
    states = {n.notice_id: n for n in store.notices("r1")}
    assert (states[IDS[0]].state, states[IDS[0]].attempts) == ("sent", 1)


def test_a_writer_that_died_leaves_its_notices_to_one_claimer_at_a_time(store: RunStore) -> None:
    # Given notices whose writer died (held 0 s: due at once)
    _run(store)
    store.mark_done("r1", "failed", {}, notices=NoticeBatch(IDS, hold_s=0))
    time.sleep(0.01)
    # When a sweeper claims them, then it gets both, as first attempts
    claimed = store.claim_notices(10, lease_s=30)
    assert sorted((n.run_id, n.notice_id, n.attempt) for n in claimed) == [
        ("r1", IDS[0], 1),
        ("r1", IDS[1], 1),
    ]
    # and a second sweeper gets nothing while the claim's lease lasts
    assert store.claim_notices(10, lease_s=30) == []


def test_a_failed_attempt_is_due_again_with_its_count_and_error(store: RunStore) -> None:
    _run(store)
    store.mark_done("r1", "failed", {}, notices=NoticeBatch(IDS[:1], hold_s=0))
    time.sleep(0.01)
    (first,) = store.claim_notices(10, lease_s=30)
    # When the attempt fails and is re-armed for (almost) now
    assert store.retry_notice(first, 0.001, "WebhookError: HTTP 500")
    time.sleep(0.01)
    # Then the next claim is attempt 2, and status shows the retry and its error
    (second,) = store.claim_notices(10, lease_s=30)
    assert second.attempt == 2
    (state,) = store.notices("r1")
    assert (state.state, state.attempts, state.error) == (
        "retrying",
        1,
        "WebhookError: HTTP 500",
    )
    # When the last attempt fails it is settled as failed, and never claimed again
    store.settle_notice(second, sent=False, error="WebhookError: HTTP 500")
    assert store.retry_notice(second, 0.001, "late") is False  # settled: nothing to re-arm
    time.sleep(0.01)
    assert store.claim_notices(10, lease_s=30) == []
    (state,) = store.notices("r1")
    assert (state.state, state.attempts, state.error) == ("failed", 2, "WebhookError: HTTP 500")


def test_a_run_without_notices_has_none(store: RunStore) -> None:
    _run(store)
    store.mark_done("r1", "success", {})
    assert store.notices("r1") == []
    assert store.claim_notices(10, lease_s=1) == []


def test_a_missed_deadline_is_claimed_once_and_writes_its_notices(store: RunStore) -> None:
    # Given a run whose deadline has passed and one whose deadline is ahead
    _run(store, "late", deadline_at=time.time() - 1)
    _run(store, "early", deadline_at=time.time() + 3600)
    assert store.due_deadlines(10) == ["late"]
    # When eight claimers try at once
    ids = ("deadline_missed:on_deadline_missed:page",)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(store.miss_deadline("late", NoticeBatch(ids, hold_s=30)))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one wins, its notice is written, and the deadline is gone from the index
    assert sorted(wins) == [False] * 7 + [True]
    assert [n.notice_id for n in store.notices("late")] == list(ids)
    assert store.due_deadlines(10) == []


def test_a_run_that_ended_in_time_never_misses_its_deadline(store: RunStore) -> None:
    # Given a run with a deadline that ends before it
    _run(store, deadline_at=time.time() + 0.05)
    store.mark_done("r1", "success", {})
    time.sleep(0.1)
    # Then its deadline is gone: nothing is due, and a late claim loses
    assert store.due_deadlines(10) == []
    assert store.miss_deadline("r1", NoticeBatch(("deadline_missed:webhook:X",))) is False
    assert store.notices("r1") == []


def test_a_pending_run_counts_toward_its_deadline_from_its_submission(store: RunStore) -> None:
    # A run waiting for a slot is stored pending, with its deadline indexed already
    base = {"dag_name": "d", "tenant_id": "t", "started_at": time.time(), "pending": True}
    store.create_run("p", "{}", {**base, "deadline_at": time.time() - 1}, ["a"], pending=True)
    assert store.due_deadlines(10) == ["p"]
