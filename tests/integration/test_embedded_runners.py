"""Two embedded runners in one process, one after the other: closing the second gives Celery's
current app back to the first, whose worker goes on running its runs (the thread pool looks
tasks up in the current app)."""

from __future__ import annotations

import pytest

from dagflow.client.runner import Runner
from dagflow.settings import Settings
from tests.support.dags import make_dag, task

pytestmark = pytest.mark.integration


def test_a_second_embedded_runner_closed_leaves_the_first_working(
    embedded_runner: Runner,
) -> None:
    # Given the session's embedded runner, and a second one started and used in this process
    dag = make_dag([task("a"), task("b", deps=("a",))], name="two_runners")
    second = Runner(Settings.from_env({"DAGFLOW_WORKFLOWS": "tests.support.workflows"}))
    second.start_embedded_worker(loglevel="WARNING")
    try:
        assert second.submit(dag).wait(timeout=30).status == "success"
    finally:
        second.close()
    # When the first runs a DAG again, then its worker runs it (not the closed one's app)
    assert embedded_runner.submit(dag).wait(timeout=30).status == "success"
