"""End to end: the dashboard run by ``python -m dagflow dashboard``, seen in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dagflow.client.runner import get_run
from dagflow.clock import isoformat
from tests.support.cluster import Cluster
from tests.support.dags import make_dag, task
from tests.support.net import free_port
from tests.support.services import require
from tests.support.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.browser


TRACEBACK = 'Traceback (most recent call last):\n  File "flows/extract.py", line 9, in run\nE: boom'


def generated_log(path: Path, now: datetime) -> None:
    """Ten runs in the last hours: 9 succeed (2 tasks each), run-3 retries and fails.

    So the KPI cards must read 18 ok, 1 failed, 5.3% error rate (1 of 19 finished tasks).
    """
    lines: list[dict[str, Any]] = []
    for n in range(10):
        run, start = f"run-{n}", now - timedelta(minutes=30 * (10 - n))
        base = {"run_id": run, "dag_name": "weekly_ops_chain", "tenant_id": f"tenant-{n % 2}"}
        if n == 7:
            base["dag_name"] = "<b>not bold</b>"

        def at(seconds: float, kind: str, _start: datetime = start, **fields: Any) -> None:
            stamp = isoformat(_start + timedelta(seconds=seconds))
            lines.append({"timestamp": stamp, "event": kind, **base, **fields})  # noqa: B023

        at(0, "dag_start", tasks=2, edges=[["extract", "load"]])
        at(0, "task_start", task_id="extract", attempt=1)
        if n == 3:
            at(2, "task_retry", task_id="extract", attempt=1, delay_s=1, error="TimeoutError: x")
            at(3, "task_start", task_id="extract", attempt=2, worker="w1@host", fence=2)
            at(5, "task_fail", task_id="extract", attempt=2, duration_s=2.0, error="E: boom",
               worker="w1@host", fence=2, traceback=TRACEBACK)  # fmt: skip
            at(5, "task_skip", task_id="load", error="upstream task failed")
            at(5, "dag_done", status="failed", tasks=2, tasks_succeeded=0, tasks_failed=1,
               tasks_skipped=1, duration_s=5.0)  # fmt: skip
            continue
        at(2, "task_ok", task_id="extract", attempt=1, duration_s=2.0)
        at(2, "task_start", task_id="load", attempt=1)
        at(3, "task_ok", task_id="load", attempt=1, duration_s=1.0)
        at(3, "dag_done", status="success", tasks=2, tasks_succeeded=2, tasks_failed=0,
           tasks_skipped=0, duration_s=3.0)  # fmt: skip
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"torn": \n'
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def dashboard_url(tmp_path: Path) -> Iterator[str]:
    """The dashboard on a free localhost port over a generated log; stopped afterwards."""
    events = tmp_path / "logs" / "orchestrator_events.jsonl"
    events.parent.mkdir()
    generated_log(events, datetime.now(UTC))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "QUEUE_"))}
    args = [
        "--events", str(events), "--state", str(tmp_path / "logs" / "state.jsonl"),
        "--refresh", "120",
    ]  # fmt: skip
    with serving_dashboard(port, args, env, tmp_path / "dashboard.log") as url:
        yield url


@contextlib.contextmanager
def serving_dashboard(
    port: int, args: list[str], env: dict[str, str], log_path: Path
) -> Iterator[str]:
    """Run ``dagflow dashboard`` on ``port`` of localhost until the block ends; its URL."""
    command = [
        sys.executable, "-m", "dagflow", "dashboard", "--host", "127.0.0.1", "--port", str(port),
        *args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven by chromedriver, with a fresh profile under tmp_path."""
    require(
        CHROMIUM.exists() and CHROMEDRIVER.exists(),
        f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1400,1800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_path=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_dashboard_kpis_runs_and_run_page(dashboard_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)

    def text_of(selector: str) -> str:
        return str(browser.find_element(By.CSS_SELECTOR, selector).text)

    # Given the dashboard over ten generated runs
    browser.get(dashboard_url + "/")

    # Then the KPI cards show the window's task counts
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#kpi-ok .kpi-value"))
    assert text_of("#kpi-ok .kpi-value") == "18"
    assert text_of("#kpi-failed .kpi-value") == "1"
    assert text_of("#kpi-error-rate .kpi-value") == "5.3%"
    assert "1 corrupt lines skipped" in text_of("#read-status")

    # And the runs table lists the newest runs first, with event text shown as text
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    assert len(rows) == 10
    assert rows[0].text.startswith("run-9")
    assert "<b>not bold</b>" in rows[2].text
    assert "failed" in rows[6].text
    assert text_of("#queue-note").startswith("Queue stats only available with a Redis broker")
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#runs-chart .bars path"))
    browser.save_screenshot(str(tmp_path / "overview.png"))

    # When the failed run's link is followed
    rows[6].find_element(By.LINK_TEXT, "run-3").click()

    # Then its page shows a Gantt bar per attempt (the retry is its own bar) and the DAG
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#gantt-chart .bars path"))
    assert text_of("#run-title") == "Run run-3"
    assert browser.current_url.endswith("/runs/run-3")
    bars = browser.find_elements(By.CSS_SELECTOR, "#gantt-chart .bars path")
    assert len(bars) == 3  # two attempts of extract, and load (skipped)
    nodes = browser.find_elements(By.CSS_SELECTOR, "#dag-graph .scatterlayer .point")
    assert len(nodes) == 2
    assert "E: boom" in text_of("#run-errors")
    assert not browser.find_element(By.ID, "overview-page").is_displayed()
    shot = tmp_path / "run_page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # And the failed task's attempts are shown, with its error, worker, lease and traceback
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#task-attempts .traceback"))
    assert text_of("#task-title") == "Task extract"
    detail = text_of("#task-attempts")
    assert "E: boom" in detail and "w1@host" in detail
    assert text_of("#task-attempts .traceback") == TRACEBACK  # indentation kept
    assert "Reason: extract: E: boom" in text_of("#run-reason")
    assert "lease lost" in text_of("#state-legend").replace("worker lost its lease", "lease lost")


def test_tenant_filter_survives_in_the_url(dashboard_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)

    def rows() -> list[str]:
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            found = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
            return [r.text for r in found]
        except StaleElementReferenceException:  # redrawn while read
            return []

    # Given a link with a tenant in it
    browser.get(dashboard_url + "/?tenant=tenant-1")

    # Then only that tenant's runs show, and the address keeps the filter
    wait.until(lambda _: len(rows()) == 5)
    assert all("tenant-1" in row for row in rows())
    assert browser.current_url.endswith("/?tenant=tenant-1")

    # When a run is opened and the back link followed, the filter is still there
    browser.find_element(By.LINK_TEXT, "run-3").click()
    wait.until(lambda _: browser.current_url.endswith("/runs/run-3?tenant=tenant-1"))
    wait.until(lambda _: browser.find_elements(By.ID, "back-link"))
    browser.find_element(By.ID, "back-link").click()
    wait.until(lambda _: browser.current_url.endswith("/?tenant=tenant-1"))
    wait.until(lambda _: len(rows()) == 5 and all("tenant-1" in row for row in rows()))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A private redis-server and one real worker that write events to one file."""
    cluster = Cluster(tmp_path / "cluster", appendonly=False, extra_env={"DAGFLOW_EVENTS": "file"})
    try:
        cluster.worker("a", concurrency=2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def cluster_dashboard(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """The dashboard on localhost over the cluster's run store and event log."""
    # Not faster than --refresh 5: on a loaded machine a 1 s refresh supersedes each render
    # before it returns, and the page never draws.
    args = ["--refresh", "5"]
    with serving_dashboard(free_port(), args, cluster.env, tmp_path / "dashboard.log") as url:
        yield url


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``url`` answers 200; fail with the log if the process dies or 30 s pass."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"dashboard did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def test_retry_and_cancel_buttons_act_on_real_runs(
    cluster: Cluster, cluster_dashboard: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "broken").touch()
    # Given a run that failed because the flag file exists
    params = {"dir": str(flags), "key": "fix"}
    failing = make_dag([task("fix", workflow="test.fail_while_flag", params=params)], name="fixme")
    failed = cluster.runner.submit(failing)
    assert failed.wait(timeout=60).status == "failed"

    # When its page is opened, it offers Retry (and no Cancel)
    browser.get(f"{cluster_dashboard}/runs/{failed.run_id}")
    wait.until(lambda _: browser.find_elements(By.ID, "retry-button"))
    assert not browser.find_elements(By.ID, "cancel-button")

    # And the flag is removed and Retry is clicked
    (flags / "broken").unlink()
    browser.find_element(By.ID, "retry-button").click()

    # Then the browser is on the new run's page, and that run succeeds
    wait.until(lambda _: failed.run_id not in browser.current_url)
    new_id = browser.current_url.rsplit("/runs/", 1)[1]
    retried = get_run(new_id, settings=cluster.settings)
    assert retried.wait(timeout=60).status == "success"
    assert retried.status().labels.get("retry_of") == failed.run_id
    wait.until(lambda _: "success" in browser.find_element(By.ID, "run-summary").text)

    # Given a run whose only task sleeps for a minute
    slow = make_dag([task("nap", workflow="test.sleep", params={"seconds": 60})], name="slow")
    running = cluster.runner.submit(slow)
    wait_for(lambda: running.status().tasks[0].state == "running", 30)

    # When Cancel is clicked on its page
    browser.get(f"{cluster_dashboard}/runs/{running.run_id}")
    wait.until(lambda _: browser.find_elements(By.ID, "cancel-button"))
    assert not browser.find_elements(By.ID, "retry-button")
    browser.find_element(By.ID, "cancel-button").click()

    # Then the run ends cancelled long before its task would have, and the page says so
    assert running.wait(timeout=30).status == "cancelled"
    wait.until(lambda _: "cancelled" in browser.find_element(By.ID, "run-summary").text)
    wait.until(lambda _: browser.find_elements(By.ID, "retry-button"))


def test_a_failed_job_is_rerun_from_the_queue_panel(
    cluster: Cluster, cluster_dashboard: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from dagflow.scheduling.job import Job, JobStatus
    from dagflow.stores.redis_jobs import RedisJobStore

    wait = WebDriverWait(browser, 60)
    flags = tmp_path / "job-flags"
    flags.mkdir()
    (flags / "broken").touch()
    # Given a scheduled job whose only try failed (the flag file was there)
    jobs = RedisJobStore(cluster.server.url(0))
    job = Job(
        id="job-rerun-1",
        dag_path="dags/fixme.yaml",
        tenant_id="t1",
        schedule_id="nightly",
        enqueued_at=time.time(),
        run_id="job-rerun-1-run",
    )
    jobs.add([job])
    params = {"dir": str(flags), "key": "fix"}
    dag = make_dag([task("fix", workflow="test.fail_while_flag", params=params)], name="fixme")
    first = cluster.runner.submit(dag, run_id=job.run_id, labels={"job_id": job.id})
    assert first.wait(timeout=60).status == "failed"
    wait_for(lambda: jobs.get(job.id).status == JobStatus.FAILED, 15)  # type: ignore[union-attr]

    # When the flag is removed and Re-run is clicked on the queue panel
    (flags / "broken").unlink()
    browser.get(cluster_dashboard + "/")
    wait.until(lambda _: browser.find_elements(By.ID, f"rerun-{job.id}"))
    browser.find_element(By.ID, f"rerun-{job.id}").click()

    # Then the browser is on the new try's page, the run succeeds and so does the job
    wait.until(lambda _: "/runs/job-rerun-1-2" in browser.current_url)
    assert get_run("job-rerun-1-2", settings=cluster.settings).wait(timeout=60).ok
    wait_for(lambda: jobs.get(job.id).status == JobStatus.SUCCESS, 15)  # type: ignore[union-attr]
    jobs.close()
