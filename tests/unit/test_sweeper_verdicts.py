"""The sweeper's verdict on a run nothing moved for a lease period, on the in-memory store.

Each test shapes a run of the chain ``a -> b`` in the embedded mode's store (its clock is the
test's), calls :func:`dagflow.execution.sweeper.check_run` and reads back what the store, the event
log and the app's in-memory broker queue recorded. Nothing is sent to a worker: step
messages stay in a queue of the test's own, drained by the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from celery import Celery

from dagflow.celery_app import make_app
from dagflow.dag.plan import RunPlan
from dagflow.execution.runtime import Runtime
from dagflow.execution.sweeper import check_run
from dagflow.settings import Settings
from dagflow.stores import MemoryRunStore
from dagflow.stores.base import FinishRequest
from dagflow.wiring import build_runtime
from tests.support.dags import make_dag, task

LEASE_S = 30.0
RUN = "run-1"


class Clock:
    """The run store's clock: seconds, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Embedded:
    """An app and its runtime on the in-memory store, as ``dagflow run`` without a broker."""

    app: Celery
    rt: Runtime
    store: MemoryRunStore
    clock: Clock
    plan: RunPlan
    queue: str

    def start(self) -> None:
        """Store run RUN with its root in the outbox, as :func:`dagflow.execution.lifecycle.open_run`."""
        meta = {"dag_name": self.plan.dag_name, "tenant_id": self.plan.tenant_id}
        self.store.create_run(
            RUN, self.plan.to_json(), meta, ["a", "b"], roots=["a"], grace_s=LEASE_S
        )

    def claim(self, task_id: str) -> int:
        """A worker takes ``task_id`` under a lease; returns its fence."""
        claim = self.store.claim(RUN, task_id, f"token-{task_id}", "celery@w1", LEASE_S)
        assert claim.state == "run"
        return claim.fence

    def end(
        self,
        task_id: str,
        state: Literal["ok", "failed"],
        skip: tuple[str, ...] = (),
        links: tuple[str, ...] | None = None,
    ) -> None:
        """Claim ``task_id`` and commit its end, as a step does: ``skip`` its descendants,
        make its ``links`` ready (by default the plan's)."""
        fence = self.claim(task_id)
        links = self.plan.tasks[task_id].links if links is None else links
        self.store.finish(
            FinishRequest(
                RUN, task_id, fence, state, "{}", skip=skip, total=2, links=links, grace_s=LEASE_S
            )
        )

    def states(self) -> dict[str, str]:
        """Each task's state in the store."""
        snap = self.store.snapshot(RUN, with_states=True)
        assert snap is not None and snap.states is not None
        return dict(snap.states)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The events of ``kind`` in the runtime's event log, oldest first."""
        return [e for e in self.rt.events.read() if e["event"] == kind]

    def sent(self) -> list[tuple[str, list[str]]]:
        """Drain the step messages sent so far: (shadow name, args) each."""
        out = []
        with self.app.connection_for_read() as conn:
            while (message := conn.default_channel.basic_get(self.queue, no_ack=True)) is not None:
                out.append((message.headers["shadow"], message.decode()[0]))
        return out

    def go_idle(self) -> None:
        """Let a lease period pass with nothing moving: the sweeper now checks the run."""
        self.clock.now += LEASE_S + 1

    def idle_at_next_sweep(self) -> bool:
        """Whether the next sweep (``sweep_s`` on) finds the run idle and checks it again."""
        self.clock.now += self.rt.settings.sweep_s
        return RUN in self.store.sweep(100, grace_s=LEASE_S, idle_s=LEASE_S).idle_runs


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    settings = Settings(
        events_path=tmp_path / "events.jsonl", state_path=tmp_path / "state.jsonl", lease_s=LEASE_S
    )
    assert settings.embedded
    app = make_app(settings)
    # The in-memory transport's queues are shared by the whole process: a queue of this
    # test's own keeps its messages from any embedded worker another test left running.
    queue = f"unit-sweeper-{uuid.uuid4().hex}"
    app.conf.task_default_queue = queue
    clock = Clock()
    rt = build_runtime(settings, store=MemoryRunStore(clock=clock))
    rt.app, app.dagflow_runtime = app, rt
    assert isinstance(rt.store, MemoryRunStore)
    dag = make_dag([task("a"), task("b", deps=("a",))], name="nightly", tenant="acme")
    yield Embedded(app, rt, rt.store, clock, dag.compiled.plan(), queue)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


@pytest.mark.parametrize("waiting", ["root unsent", "retry due later"])
def test_a_run_with_a_step_in_the_outbox_is_alive(embedded: Embedded, waiting: str) -> None:
    # Given an idle run whose root is still in the outbox, or whose step waits 10 minutes
    # for its retry
    embedded.start()
    if waiting == "retry due later":
        fence = embedded.claim("a")
        assert embedded.store.retry(RUN, "a", fence, due_in_s=600, grace_s=LEASE_S)
    before = embedded.states()
    embedded.go_idle()
    # When the sweeper checks it
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then it is left alone, and counted as moved now (the next sweep does not check it)
    assert verdict == "alive"
    assert embedded.states() == before
    assert embedded.sent() == [] and embedded.rt.events.read() == []
    assert not embedded.idle_at_next_sweep()


def test_a_step_whose_worker_died_is_requeued(embedded: Embedded) -> None:
    # Given a's worker died: its lease expired, and no sweep has sent it again yet
    embedded.start()
    embedded.claim("a")
    embedded.go_idle()
    assert embedded.store.inspect(RUN).live == frozenset()
    # When the sweeper checks the run
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then a is back in the outbox and sent again; b (its parent has not succeeded) is not
    assert verdict == "requeued"
    assert embedded.store.inspect(RUN).live == {"a"}
    assert embedded.sent() == [("nightly:a", [RUN, "a"])]
    assert embedded.states() == {"a": "running", "b": "pending"}
    assert embedded.rt.events.read() == []
    assert not embedded.idle_at_next_sweep()


def test_a_ready_child_nobody_sent_is_requeued(embedded: Embedded) -> None:
    # Given a succeeded, but b's outbox entry was lost (the finish made nothing ready)
    embedded.start()
    embedded.end("a", "ok", links=())
    embedded.go_idle()
    assert embedded.store.inspect(RUN).live == frozenset()
    # When the sweeper checks the run
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then b is in the outbox and sent
    assert verdict == "requeued"
    assert embedded.store.inspect(RUN).live == {"b"}
    assert embedded.sent() == [("nightly:b", [RUN, "b"])]


@pytest.mark.parametrize(
    ("a_ends", "skip", "status", "counts"),
    [
        ("ok", (), "success", (2, 0, 0)),
        ("failed", ("b",), "failed", (0, 1, 1)),
    ],
    ids=["all ok", "a failed, b skipped"],
)
def test_a_run_whose_tasks_all_ended_is_finalized(
    embedded: Embedded,
    a_ends: Literal["ok", "failed"],
    skip: tuple[str, ...],
    status: str,
    counts: tuple[int, int, int],
) -> None:
    # Given every task ended, but the step that ended the last one died before closing the run
    embedded.start()
    embedded.end("a", a_ends, skip=skip)
    if a_ends == "ok":
        embedded.end("b", "ok")
    embedded.go_idle()
    # When the sweeper checks the run
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then it is closed: its status, one dag_done with the counts, waiters woken
    assert verdict == "finalized"
    snap = embedded.store.snapshot(RUN)
    assert snap is not None and snap.status == status
    assert "error" not in snap.meta and "finished_at" in snap.meta
    (done,) = embedded.events("dag_done")
    assert (done["status"], done["tasks"], done.get("error")) == (status, 2, None)
    assert (done["tasks_succeeded"], done["tasks_failed"], done["tasks_skipped"]) == counts
    assert embedded.store.wait_done(RUN, 0)
    assert embedded.sent() == []
    assert not embedded.idle_at_next_sweep()


def test_a_run_that_already_ended_is_forgotten(embedded: Embedded) -> None:
    # Given a run the sweeper finalized
    embedded.start()
    embedded.end("a", "ok")
    embedded.end("b", "ok")
    embedded.go_idle()
    assert check_run(embedded.app, embedded.rt, RUN) == "finalized"
    # When it is checked again, then it is only forgotten: no second dag_done, same status
    assert check_run(embedded.app, embedded.rt, RUN) == "forgotten"
    assert len(embedded.events("dag_done")) == 1
    snap = embedded.store.snapshot(RUN)
    assert snap is not None and snap.status == "success"


def test_a_run_whose_state_is_gone_is_stalled(embedded: Embedded) -> None:
    # Given a run whose state vanished from the store (what a Redis FLUSHDB or an expired
    # TTL does), while the sweeper's index still names it
    embedded.start()
    del embedded.store._runs[RUN]
    embedded.go_idle()
    # When the sweeper checks it
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then it is ended as failed, named from the index, and dropped from the index
    assert verdict == "stalled"
    (done,) = embedded.events("dag_done")
    assert (done["run_id"], done["dag_name"], done["tenant_id"], done["status"]) == (
        RUN,
        "nightly",
        "acme",
        "failed",
    )
    assert done["error"] == (
        "stalled: the run's state is gone from the run store (expired or flushed)"
    )
    assert embedded.sent() == []
    assert not embedded.idle_at_next_sweep()


def test_a_run_that_can_never_move_is_stalled(embedded: Embedded) -> None:
    # Given a failed, but the skip of its descendant b was never recorded: b is pending
    # with nothing that could ever start it
    embedded.start()
    embedded.end("a", "failed", skip=())
    embedded.go_idle()
    # When the sweeper checks the run
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then it is ended as failed, with a reason naming the task that cannot start
    assert verdict == "stalled"
    reason = "stalled: tasks b can never start (the state of the tasks upstream of them is lost)"
    snap = embedded.store.snapshot(RUN)
    assert snap is not None
    assert (snap.status, snap.meta["error"]) == ("failed", reason)
    (done,) = embedded.events("dag_done")
    assert (done["status"], done["error"], done["tasks_failed"]) == ("failed", reason, 1)
    assert embedded.sent() == []


def test_a_cancelled_run_whose_step_died_is_closed_not_resent(embedded: Embedded) -> None:
    # Given a run cancelled while a ran (its live lease kept it running, b was cancelled)
    embedded.start()
    embedded.claim("a")
    embedded.clock.now += 1
    assert embedded.store.cancel(RUN).running == (("a", "token-a"),)
    # And a's worker then died without committing: its lease expired
    embedded.go_idle()
    # When the sweeper checks the run
    verdict = check_run(embedded.app, embedded.rt, RUN)
    # Then a is ended as cancelled (never sent again) and the run is closed as cancelled
    assert verdict == "finalized"
    assert embedded.states() == {"a": "cancelled", "b": "cancelled"}
    assert [e["task_id"] for e in embedded.events("task_cancel")] == ["a"]
    (done,) = embedded.events("dag_done")
    assert (done["status"], done["tasks_cancelled"]) == ("cancelled", 2)
    snap = embedded.store.snapshot(RUN)
    assert snap is not None and snap.status == "cancelled"
    assert embedded.sent() == []


def test_a_cancelled_run_nobody_closed_is_finalized_as_cancelled(embedded: Embedded) -> None:
    # Given a run cancelled before it started: the cancel ended every task, but the process
    # that cancelled it died before closing the run
    embedded.start()
    cancelled = embedded.store.cancel(RUN)
    assert (cancelled.newly_cancelled, cancelled.complete) == (("a", "b"), True)
    embedded.go_idle()
    # When the sweeper checks the run, then it closes it as cancelled
    assert check_run(embedded.app, embedded.rt, RUN) == "finalized"
    (done,) = embedded.events("dag_done")
    assert (done["status"], done["tasks_cancelled"], done["tasks_failed"]) == ("cancelled", 2, 0)
    assert embedded.sent() == []
