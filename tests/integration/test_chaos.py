"""Chaos: a steady DAG load on three workers while a seeded injector breaks things at random.

One run of :class:`tests.support.chaos.ChaosRun` per module (about 75 s of chaos, then a
bounded drain): three workers ``-c 2``, a lease of 3 s and a sweep of 0.5 s, a 25-task DAG
(fan-outs, joins, two flaky tasks with retries, payload passing; every other run also maps
over a list of 4-6 items, one instance flaky, and joins them) submitted every 2 s, and a
fault every 3-6 s: whole-worker SIGKILL, pool-process SIGKILL, SIGSTOP of a worker (0.5-2.5
leases), Redis SIGKILL and restart (AOF ``appendfsync always``) 1-4 s later, ``CLIENT KILL
TYPE normal``, collector SIGKILL. Each test below asserts one promise of the README's
"Guarantees" against what the run recorded (:mod:`tests.support.chaos_analysis`).

The seed is fixed; ``DAGFLOW_CHAOS_SEED=<n>`` replays another one, ``DAGFLOW_CHAOS_S``
changes the chaos window. Every assertion message starts with the seed and the run's
compact report (faults by kind, recovery p50/max per kind).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.chaos import ChaosConfig, ChaosRun
from tests.support.chaos_analysis import ChaosReport, analyse
from tests.support.redis_server import redis_server_binary
from tests.support.services import require

#: The default seed (override with DAGFLOW_CHAOS_SEED).
DEFAULT_SEED = 20261204
#: Seconds of chaos by default (override with DAGFLOW_CHAOS_S).
DEFAULT_CHAOS_S = 75.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosReport]:
    """One chaos run, judged; shared by the tests of this module (each checks one promise)."""
    require(redis_server_binary() is not None, "redis-server is not installed")
    seed = int(os.environ.get("DAGFLOW_CHAOS_SEED") or DEFAULT_SEED)
    duration = float(os.environ.get("DAGFLOW_CHAOS_S") or DEFAULT_CHAOS_S)
    config = ChaosConfig(seed=seed, duration_s=duration)
    observations = ChaosRun(tmp_path_factory.mktemp("chaos"), config).run()
    judged = analyse(observations)
    print(f"\n{judged.summary()}")
    yield judged


def _assert_none_failed(report: ChaosReport, check: str) -> None:
    """Fail with the check's own evidence first, then the run's compact report."""
    lines = report.failed(check)
    if lines:
        shown = "\n".join(lines[:15]) + (f"\n... {len(lines) - 15} more" if len(lines) > 15 else "")
        pytest.fail(
            f"seed {report.seed}: {len(lines)} failures of '{check}':\n{shown}\n\n"
            f"{report.summary()}",
            pytrace=False,
        )


def test_the_chaos_run_injected_every_kind_of_fault(report: ChaosReport) -> None:
    # A run that injected nothing, or ran no load, would make the other tests vacuous.
    injected = {k for k, n in report.faults.items() if n}
    assert {"worker_kill", "pool_kill", "freeze", "redis_kill", "client_kill"} <= injected, (
        f"seed {report.seed}: injected only {sorted(injected)}\n{report.summary()}"
    )
    assert report.runs["submitted"] >= 20, f"seed {report.seed}\n{report.summary()}"


def test_every_run_ends_success_once(report: ChaosReport) -> None:
    _assert_none_failed(report, "run ended success once")


def test_every_output_is_computed_from_the_right_parents(report: ChaosReport) -> None:
    _assert_none_failed(report, "outputs right")


def test_each_task_ends_once(report: ChaosReport) -> None:
    _assert_none_failed(report, "one task_ok per task")


def test_each_mapped_task_expands_once_and_ends_once(report: ChaosReport) -> None:
    # Every other run maps: a run where none was checked would make this test vacuous.
    assert report.maps["mapped tasks"] >= 5, f"seed {report.seed}\n{report.summary()}"
    assert report.maps["instance retries"] >= 1, f"seed {report.seed}\n{report.summary()}"
    _assert_none_failed(report, "each map expands once")


def test_no_step_runs_twice_at_once_unless_its_holder_lost_the_lease(report: ChaosReport) -> None:
    _assert_none_failed(report, "no overlapping executions")


def test_no_worker_exits_on_its_own(report: ChaosReport) -> None:
    _assert_none_failed(report, "no worker exited on its own")


def test_steps_taken_from_their_holder_run_again_within_the_bound(report: ChaosReport) -> None:
    _assert_none_failed(report, "recovery within the bound")


def test_every_retry_runs_by_due_plus_lease_and_sweep(report: ChaosReport) -> None:
    _assert_none_failed(report, "every retry by due + lease + sweep")


def test_a_connection_blip_leaves_running_steps_with_their_holder(report: ChaosReport) -> None:
    _assert_none_failed(report, "a blip keeps steps with their holder")


def test_the_collector_writes_every_event_once(report: ChaosReport) -> None:
    _assert_none_failed(report, "collector wrote every event once")
