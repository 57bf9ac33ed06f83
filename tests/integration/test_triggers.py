"""Event-triggered runs against a real Redis and a real ``celery -A dagflow worker``.

Each test is a deployment root with a ``dags/`` folder (``DAGFLOW_DAGS_DIR``) on an empty
database of the session's private Redis. The DAGs run ``test.context_log``, which appends
each attempt's run id, tenant and params to ``contexts.jsonl``, so a test sees what ran, and
how often, from the worker's processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.client.runner import get_run
from dagflow.client.triggers import TriggerResult, trigger_event
from dagflow.errors import DagValidationError, EventError
from dagflow.settings import Settings
from tests.support.processes import ROOT, start_worker, stop_worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def dag_text(name: str, tenant: str, events: list[str], root: Path) -> str:
    triggers = ", ".join(f"{{event: {e}}}" for e in events)
    return (
        f"name: {name}\ntenant_id: {tenant}\ntriggers: [{triggers}]\n"
        "params: {day: null, limit: 10}\n"
        f"tasks:\n  - {{id: log, workflow_ref: test.context_log, params: {{dir: '{root}'}}}}\n"
    )


class Site:
    """A deployment root: its DAG folder, environment and one worker."""

    def __init__(self, root: Path, broker: str) -> None:
        self.root = root
        (root / "dags").mkdir()
        self.env = worker_env(
            broker,
            root / "events.jsonl",
            root / "state.jsonl",
            DAGFLOW_DAGS_DIR=str(root / "dags"),
            DAGFLOW_EVENTS="file",
        )
        self.settings = Settings.from_env(self.env)
        self.worker: subprocess.Popen[bytes] | None = None

    def dag(self, file: str, name: str, tenant: str, events: list[str]) -> None:
        (self.root / "dags" / file).write_text(dag_text(name, tenant, events, self.root))

    def start_worker(self) -> None:
        self.worker = start_worker(self.env, self.root / "worker.log", concurrency=2)

    def contexts(self) -> list[dict[str, Any]]:
        path = self.root / "contexts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagflow", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path, scratch_redis: str) -> Iterator[Site]:
    from dagflow import workflows

    deployment = Site(tmp_path, scratch_redis)
    workflows.load(deployment.settings.workflow_modules)
    yield deployment
    if deployment.worker is not None:
        stop_worker(deployment.worker)


def test_an_event_sent_five_times_starts_one_run_with_its_data(site: Site) -> None:
    # Given a DAG triggered by orders.loaded, and a worker
    site.dag("nightly.yaml", "nightly", "acme", ["orders.loaded"])
    site.dag("other.yaml", "other", "acme", ["orders.shipped"])
    site.start_worker()
    # When the same event id is triggered 5 times: 3 from the CLI, 2 from Python
    first = site.cli("trigger", "orders.loaded", "--id", "batch-1", "--data", '{"day": "d1"}')
    assert first.returncode == 0, first.stderr
    (line,) = [ln for ln in first.stdout.splitlines() if "DAG nightly" in ln]
    run_id = line.split()[0]
    assert line.endswith(": started") and "started 1 runs" in first.stdout
    repeats = [
        site.cli("trigger", "orders.loaded", "--id", "batch-1", "--data", '{"day": "d1"}')
        for _ in range(2)
    ]
    results = [
        trigger_event("orders.loaded", "batch-1", {"day": "d1"}, settings=site.settings)
        for _ in range(2)
    ]
    # Then each repeat started nothing and names the first call's run
    for repeat in repeats:
        assert repeat.returncode == 0, repeat.stderr
        assert "was triggered before: nothing started again" in repeat.stdout
        assert f"  {run_id}  DAG nightly (tenant acme): started by an earlier call" in (
            repeat.stdout
        )
    for result in results:
        assert result.repeat and [r.run_id for r in result.runs] == [run_id]
    # And exactly one run ran, with the event's data as its params
    get_run(run_id, settings=site.settings).wait(timeout=30)
    (ran,) = site.contexts()
    assert ran["run_id"] == run_id and ran["params"] == {"day": "d1", "limit": 10}


def test_concurrent_triggers_of_one_event_id_start_one_run(site: Site) -> None:
    # Given two DAGs of one event (no worker: only the starts matter)
    site.dag("a.yaml", "dag_a", "acme", ["orders.loaded"])
    site.dag("b.yaml", "dag_b", "acme", ["orders.loaded", "other"])
    results: list[TriggerResult] = []
    lock = threading.Lock()

    def call() -> None:
        result = trigger_event("orders.loaded", "same-id", {}, settings=site.settings)
        with lock:
            results.append(result)

    # When 10 threads trigger the same event id at once
    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then each DAG got exactly one run, and every call names those same runs
    assert len(results) == 10
    started = [run for result in results for run in result.runs if run.started]
    assert sorted(run.dag for run in started) == ["dag_a", "dag_b"]
    ids = {run.dag: run.run_id for run in started}
    for result in results:
        assert {run.dag: run.run_id for run in result.runs} == ids
    from dagflow.client.runner import list_runs

    runs = list_runs(settings=site.settings, limit=100)
    assert sorted(r.run_id for r in runs) == sorted(ids.values())


def test_bad_data_is_one_line_naming_the_param_and_starts_nothing(site: Site) -> None:
    site.dag("a.yaml", "dag_a", "acme", ["orders.loaded"])
    site.dag("b.yaml", "dag_b", "acme", ["orders.loaded"])
    proc = site.cli("trigger", "orders.loaded", "--id", "1", "--data", '{"dya": "d1"}')
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].endswith(
        "a.yaml, field 'params.dya': DagValidationError: unknown run param (known: day, limit)"
    ), proc.stderr
    assert len(lines) == 1
    with pytest.raises(DagValidationError, match=r"params\.dya"):
        trigger_event("orders.loaded", "1", {"dya": 1}, settings=site.settings)
    # And the id was not used up: good data with the same id starts both DAGs
    result = trigger_event("orders.loaded", "1", {"day": "x"}, settings=site.settings)
    assert [r.started for r in result.runs] == [True, True]
    # Bad JSON, a data that is not an object, an empty id: one line, exit 2
    bad_json = site.cli("trigger", "orders.loaded", "--id", "2", "--data", "{nope")
    assert bad_json.returncode == 2 and "--data" in bad_json.stderr
    not_object = site.cli("trigger", "orders.loaded", "--id", "2", "--data", "[1]")
    assert not_object.returncode == 2
    assert not_object.stderr.strip() == (
        "event 'orders.loaded', field 'data': EventError: expected a JSON object of run "
        "params, got list"
    )
    with pytest.raises(EventError, match="field 'id'"):
        trigger_event("orders.loaded", " ", {}, settings=site.settings)


def test_a_tenant_starts_only_its_own_dags(site: Site) -> None:
    site.dag("a.yaml", "acme_dag", "acme", ["orders.loaded"])
    site.dag("b.yaml", "beta_dag", "beta", ["orders.loaded"])
    # A tenant's call starts its DAGs only
    acme = trigger_event("orders.loaded", "7", {}, tenant="acme", settings=site.settings)
    assert [(r.dag, r.tenant_id, r.started) for r in acme.runs] == [("acme_dag", "acme", True)]
    # Another tenant, same event id: its own DAG, not blocked by acme's claim
    beta = site.cli("trigger", "orders.loaded", "--id", "7", "--tenant", "beta", "--json")
    assert beta.returncode == 0, beta.stderr
    assert [(r["dag"], r["started"]) for r in json.loads(beta.stdout)["runs"]] == [
        ("beta_dag", True)
    ]
    # A tenant with no DAG for the event starts nothing, and says so
    none = site.cli("trigger", "orders.loaded", "--id", "7", "--tenant", "gamma")
    assert none.returncode == 0
    assert "No DAG of tenant gamma lists event orders.loaded" in none.stdout
    # No tenant (an admin): every DAG, each started once in all
    everyone = trigger_event("orders.loaded", "7", {}, settings=site.settings)
    assert [(r.dag, r.started) for r in everyone.runs] == [
        ("acme_dag", False),
        ("beta_dag", False),
    ]
