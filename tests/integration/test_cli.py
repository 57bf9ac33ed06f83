"""The ``dagflow`` command as a user runs it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "dags" / "weekly_ops_chain.yaml"


def dagflow(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_", "STATE_"))
    }
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "dagflow", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plan_prints_the_dry_run_block() -> None:
    proc = dagflow("plan", str(SEED))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "DRY RUN: DAG 'weekly_ops_chain'\n"
        "Tenant: local-dev\n"
        "Tasks: 3\n"
        "\n"
        "Execution Plan:\n"
        "  1. sweep (workflow: inbox_drive_sweep, depends_on: none)\n"
        "  2. report (workflow: weekly_report_pack, depends_on: sweep)\n"
        "  3. brief (workflow: meeting_transcript_brief, depends_on: report)\n"
    )
    assert "Critical path (3 tasks): sweep -> report -> brief" in proc.stdout


def test_run_embedded_default_needs_no_server(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = dagflow("run", str(SEED), env={"ORCH_EVENTS_PATH": str(events)})
    assert proc.returncode == 0, proc.stderr
    assert "on embedded worker" in proc.stdout
    block = proc.stdout.split("DAG EXECUTION COMPLETE\n", 1)[1]
    assert block.startswith("DAG: weekly_ops_chain\nTasks Succeeded: 3\nTasks Failed: 0\n")
    assert "[ok] sweep ok" in proc.stdout
    assert events.read_text().count('"event":"task_ok"') == 3


def test_failed_run_exits_1(tmp_path: Path) -> None:
    dag = tmp_path / "fail.yaml"
    dag.write_text(
        "name: failing\ntenant_id: t\ntasks:\n"
        "  - {id: report, workflow_ref: weekly_report_pack, params: {start_date: nope}}\n"
        "  - {id: brief, workflow_ref: meeting_transcript_brief, depends_on: [report]}\n"
    )
    proc = dagflow("run", "--quiet", str(dag), env={"ORCH_EVENTS_PATH": str(tmp_path / "e.jsonl")})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Tasks Failed: 1\nTasks Skipped: 1\n" in proc.stdout
    # --quiet still names the failed task, its attempts and its error, in one line
    assert (
        "RunnerError: Task 'report' failed after 1 attempt: ValueError: start_date must be an "
        "ISO date like 2025-10-01, got 'nope'\n"
    ) in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_run_whose_cleanup_ran_after_a_failure_still_exits_1(tmp_path: Path) -> None:
    # Given a failing task and a cleanup (all_done) after it
    dag = tmp_path / "cleanup.yaml"
    dag.write_text(
        "name: cleanup\ntenant_id: t\ntasks:\n"
        "  - {id: report, workflow_ref: weekly_report_pack, params: {start_date: nope}}\n"
        "  - {id: brief, workflow_ref: meeting_transcript_brief, depends_on: [report]}\n"
        "  - {id: tidy, workflow_ref: inbox_drive_sweep, depends_on: [report, brief],"
        " trigger_rule: all_done}\n"
    )
    proc = dagflow("run", "--quiet", str(dag), env={"ORCH_EVENTS_PATH": str(tmp_path / "e.jsonl")})
    # Then the cleanup ran, and the run is failed: exit 1
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Tasks Succeeded: 1\nTasks Failed: 1\nTasks Skipped: 1\n" in proc.stdout


BAD_FILES = {
    "cycle.yaml": (
        "name: my_dag\ntenant_id: t\ntasks:\n"
        "  - {id: a, workflow_ref: inbox_drive_sweep, depends_on: [b]}\n"
        "  - {id: b, workflow_ref: inbox_drive_sweep, depends_on: [a]}\n",
        "cycle.yaml: CycleDetectedError: Cycle detected in DAG 'my_dag': a -> b -> a",
    ),
    "unknown.yaml": (
        "name: x\ntenant_id: t\ntasks:\n  - {id: a, workflow_ref: invalid_workflow}\n",
        "unknown.yaml, task 'a', field 'workflow_ref': RunnerError: Unknown workflow: invalid_workflow",
    ),
    "yaml.yaml": ("name: x\ntasks: [\n", "yaml.yaml:3: DagValidationError: malformed YAML"),
}


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_invalid_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, command: str, name: str
) -> None:
    text, expected = BAD_FILES[name]
    (tmp_path / name).write_text(text)
    logs = tmp_path / "logs"
    proc = dagflow(command, name, cwd=tmp_path, env={"ORCH_EVENTS_PATH": str(logs / "e.jsonl")})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().startswith(expected)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not logs.exists()  # nothing logged, nothing half-written


def test_validate_many_files(tmp_path: Path) -> None:
    text, _ = BAD_FILES["cycle.yaml"]
    (tmp_path / "bad.yaml").write_text(text)
    proc = dagflow("validate", str(SEED), str(tmp_path / "bad.yaml"))
    assert proc.returncode == 2
    assert f"{SEED}: ok (3 tasks)" in proc.stdout
    assert "bad.yaml: CycleDetectedError" in proc.stderr
    assert dagflow("validate", str(SEED)).returncode == 0


FIVE_PROBLEMS = (
    "name: five\ntenant: t\ntasks:\n"
    "  - {id: a, workflow_ref: inbox_drive_sweep, retries: '2', depends_on: b}\n"
    "  - {id: b, workflow_ref: inbox_drive_sweep, params: [1], timeout_s: 0}\n"
)


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_every_problem_of_a_file_is_one_line(tmp_path: Path, command: str) -> None:
    # Given a DAG file with five mistakes
    (tmp_path / "five.yaml").write_text(FIVE_PROBLEMS)
    logs = tmp_path / "logs"
    # When it is validated, planned or run
    proc = dagflow(command, "five.yaml", cwd=tmp_path, env={"ORCH_EVENTS_PATH": str(logs / "e")})
    # Then it exits 2 with five lines, each naming the file, the task or key, and the field
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 5, proc.stderr
    assert all(line.startswith("five.yaml, ") for line in lines)
    assert (
        "five.yaml, field 'tenant': DagValidationError: unknown key (did you mean 'tenant_id'?)"
        in lines
    )
    assert (
        "five.yaml, task 'a', field 'depends_on': DagValidationError: "
        "expected a list of task ids, got the string 'b' (write [b])"
    ) in lines
    assert not logs.exists()


def test_validate_reports_every_problem_of_a_schedule_file(tmp_path: Path) -> None:
    (tmp_path / "schedules").mkdir()
    bad = tmp_path / "schedules" / "bad.yaml"
    bad.write_text(
        "- {id: a, cron: '61 * * * *', dag: d.yaml, tenant_id: t}\n"
        "- {id: b, cron: '* * * * *', dag: d.yaml, tenant: t, enabled: maybe}\n"
    )
    proc = dagflow("validate", "schedules/bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "schedules/bad.yaml, schedule 'a', field 'cron': ScheduleError: minute field '61' is "
        "invalid (use 0-59, with *, */n, a-b and lists)",
        "schedules/bad.yaml, schedule 'a', field 'tenant_id': ScheduleError: unknown key "
        "(did you mean 'tenant'?)",
        "schedules/bad.yaml, schedule 'b', field 'enabled': ScheduleError: expected true or "
        "false, got the string 'maybe'",
    ]


@pytest.mark.integration
def test_run_on_redis_workers(
    redis_env: dict[str, str], celery_worker_proc: object, tmp_path: Path
) -> None:
    env = {k: v for k, v in redis_env.items() if k.startswith(("DAGFLOW_", "ORCH_", "STATE_"))}
    proc = dagflow("run", str(SEED), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "on workers on redis://" in proc.stdout
    assert "Tasks Succeeded: 3" in proc.stdout
    no_wait = dagflow("run", "--no-wait", str(SEED), env=env)
    assert no_wait.returncode == 0
    assert len(no_wait.stdout.strip().splitlines()[-1]) == 32  # the run id


def test_run_with_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    proc = dagflow("run", str(SEED), env={"DAGFLOW_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert proc.returncode == 3
    assert proc.stderr.startswith("ConfigError: cannot reach Redis at redis://127.0.0.1:1/0")


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_worker_and_beat_refuse_to_start_without_a_broker(service: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "QUEUE_", "REDIS_"))
    }
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "dagflow", service],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3  # a configuration error
    assert "DAGFLOW_BROKER_URL is not set" in proc.stdout + proc.stderr


def test_workflows_from_an_installed_packages_entry_point(tmp_path: Path) -> None:
    # Given an installed distribution that declares a dagflow.workflows entry point
    site = tmp_path / "site"
    (site / "acme_flows").mkdir(parents=True)
    (site / "acme_flows" / "__init__.py").write_text(
        "import dagflow\n\n@dagflow.workflow('acme.hello')\n"
        "def hello(params):\n    return {'greeting': 'hello ' + params['who']}\n"
    )
    dist = site / "acme_flows-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-flows\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dagflow.workflows]\nacme = acme_flows\n")
    dag = tmp_path / "hello.yaml"
    dag.write_text(
        "name: hello\ntenant_id: t\ntasks:\n  - {id: hi, workflow_ref: acme.hello, params: {who: you}}\n"
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "ORCH_EVENTS_PATH": str(tmp_path / "e.jsonl")}
    # When it is validated and run, Then the workflow is found without DAGFLOW_WORKFLOWS
    assert dagflow("validate", str(dag), env=env).returncode == 0
    proc = dagflow("run", str(dag), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Tasks Succeeded: 1" in proc.stdout


def test_unwritable_event_log_never_fails_a_run(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    proc = dagflow("run", str(SEED), env={"ORCH_EVENTS_PATH": str(blocker / "events.jsonl")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Tasks Succeeded: 3" in proc.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DAGFLOW_RETRY_JITTER": "lots"},
            "ConfigError: DAGFLOW_RETRY_JITTER='lots' is not a number",
        ),
        (
            {"DAGFLOW_WORKFLOWS": "no_such_module"},
            "ConfigError: DAGFLOW_WORKFLOWS: cannot import module 'no_such_module'",
        ),
    ],
)
def test_bad_environment_is_one_line_and_exit_3(env: dict[str, str], expected: str) -> None:
    proc = dagflow("run", str(SEED), env=env)
    assert proc.returncode == 3
    assert proc.stderr.startswith(expected) and len(proc.stderr.strip().splitlines()) == 1


COMMANDS = (
    "api",
    "backfill",
    "cancel",
    "dashboard",
    "events",
    "jobs",
    "metrics",
    "outputs",
    "plan",
    "rerun-job",
    "retry",
    "run",
    "runs",
    "schedule",
    "status",
    "tokens",
    "trigger",
    "validate",
    "wait",
)


def test_help_lists_every_command_with_examples_and_the_exit_codes() -> None:
    from dagflow.cli import cli

    proc = dagflow("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: dagflow [OPTIONS] COMMAND [ARGS]...")
    assert sorted(cli.commands) == list(COMMANDS)
    listed = proc.stdout.split("Commands:\n", 1)[1]
    for name in COMMANDS:
        line = next(row for row in listed.splitlines() if row.strip().startswith(name + " "))
        assert len(line.split()) > 2, line  # the name and a one-line description
    assert "Examples:\n    dagflow plan dags/weekly_ops_chain.yaml" in proc.stdout
    for code in (
        "0    ok",
        "1    a task",
        "2    invalid input",
        "3    configuration",
        "4    stopped waiting",
        "130  ",
    ):
        assert f"\n    {code}" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_under_its_dagflow_name(command: str) -> None:
    proc = dagflow(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: dagflow {command} [OPTIONS]")
    assert "python -m" not in proc.stdout


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    proc = dagflow("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"dagflow, version {version('dagflow')}\n"


def test_console_script_entry_point_is_the_same_command() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dagflow.cli import main; sys.exit(main())",
            "plan",
            str(SEED),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("DRY RUN: DAG 'weekly_ops_chain'")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["plan", str(SEED)],
            {"DAGFLOW_WORKFLOWS": "no_such_module"},
            "ConfigError: DAGFLOW_WORKFLOWS",
        ),
        (
            ["validate", str(SEED)],
            {"DAGFLOW_WORKFLOWS": "no_such_module"},
            "ConfigError: DAGFLOW_WORKFLOWS",
        ),
        (
            ["run", str(SEED)],
            {"DAGFLOW_RETRY_JITTER": "5"},
            "ConfigError: DAGFLOW_RETRY_JITTER=5.0 must be between 0 and 1",
        ),
        (
            ["schedule", "--once"],
            {"SCHED_TICK_MS": "abc"},
            "ConfigError: SCHED_TICK_MS='abc' is not an integer",
        ),
        (["status", "0" * 32], {}, "ConfigError: dagflow keeps run state in Redis"),
        (["runs"], {}, "ConfigError: dagflow keeps run state in Redis"),
        (["outputs", "0" * 32], {}, "ConfigError: dagflow keeps run state in Redis"),
        (["trigger", "e", "--id", "1"], {}, "ConfigError: event triggers need Redis"),
        (["backfill", "--cancel", "x"], {}, "ConfigError: backfills need Redis"),
        (["api"], {}, "ConfigError: dagflow api needs workers and Redis"),
        (["tokens", "list"], {}, "ConfigError: dagflow keeps run state in Redis"),
        (
            ["dashboard"],
            {"DAGFLOW_DASHBOARD_PORT": "x"},
            "ConfigError: DAGFLOW_DASHBOARD_PORT='x' is not an integer",
        ),
        (
            ["metrics"],
            {"DAGFLOW_METRICS_RUN_BUCKETS": "60,10"},
            "ConfigError: DAGFLOW_METRICS_RUN_BUCKETS='60,10' must list positive seconds",
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_every_command_exits_3_on_a_configuration_error(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    proc = dagflow(*args, env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.startswith(expected)
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", "missing.yaml"], "missing.yaml: DagValidationError: file not found"),
        (["validate", "missing.yaml"], "missing.yaml: DagValidationError: file not found"),
        (["run", "missing.yaml"], "missing.yaml: DagValidationError: file not found"),
        (["run", "--timeout", "soon", str(SEED)], "Error: Invalid value for '--timeout'"),
        (["schedule"], "Error: give exactly one of --once and --serve"),
        (["schedule", "--once", "--serve"], "Error: give exactly one of --once and --serve"),
        (
            ["schedule", "--once", "--dir", "missing"],
            "missing: ScheduleError: schedules directory not found",
        ),
        (
            ["schedule", "--once", "--now", "2026-11-26T10:05:00"],
            "Error: Invalid value for '--now'",
        ),
        (["dashboard", "--port", "x"], "Error: Invalid value for '--port'"),
        (["runs", "--status", "lost"], "Error: Invalid value for '--status'"),
        (["runs", "--limit", "0"], "Error: Invalid value for '--limit'"),
        (["status"], "Error: Missing argument 'RUN_ID'"),
        (["validate"], "Error: Missing argument 'FILES...'"),
        (["no-such-command"], "Error: No such command 'no-such-command'"),
        (["plan", "--no-such-option", str(SEED)], "Error: No such option"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_every_command_exits_2_on_invalid_input(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    proc = dagflow(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_schedule_once_exits_2_on_an_invalid_schedule_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        '- id: x\n  cron: "61 * * * *"\n  dag: dags/x.yaml\n  tenant: t\n'
    )
    proc = dagflow("schedule", "--once", "--dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ScheduleError" in proc.stderr and "field 'cron'" in proc.stderr


@pytest.mark.parametrize("position", ["before", "after"])
def test_verbose_before_or_after_the_command_shows_the_traceback(position: str) -> None:
    args = (
        ["--verbose", "plan", "missing.yaml"]
        if position == "before"
        else ["plan", "missing.yaml", "--verbose"]
    )
    proc = dagflow(*args)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "DagValidationError" in proc.stderr


def test_run_from_another_folder_says_where_it_creates_the_log(tmp_path: Path) -> None:
    # Given a relative ORCH_EVENTS_PATH (the default) and a run started from another folder
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGFLOW_", "ORCH_", "QUEUE_"))}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagflow",
            "run",
            "--quiet",
            str(ROOT / "dags" / "weekly_ops_chain.yaml"),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then the run succeeds and says, on stderr, which folder it created for the log
    assert proc.returncode == 0, proc.stderr
    assert f"creating {tmp_path.resolve()}/logs for orchestrator_events.jsonl" in proc.stderr
    assert (tmp_path / "logs" / "orchestrator_events.jsonl").exists()


QUEUED_DAG = (
    "name: queued\ntenant_id: t\nqueue: io\ntasks:\n"
    "  - {id: sweep, workflow_ref: inbox_drive_sweep}\n"
    "  - {id: report, workflow_ref: weekly_report_pack, depends_on: [sweep], queue: gpu,\n"
    "     params: {start_date: '2025-10-01', end_date: '2025-10-07'}}\n"
    "  - {id: brief, workflow_ref: meeting_transcript_brief, depends_on: [report],\n"
    "     params: {meeting_title: Review, transcript: 'Action: Bob to ship'}}\n"
)


def test_plan_shows_each_tasks_queue(tmp_path: Path) -> None:
    # Given a DAG whose default queue is io, with report on gpu
    dag = tmp_path / "queued.yaml"
    dag.write_text(QUEUED_DAG)
    # When it is planned, then each task says its queue (its own, else the DAG's)
    proc = dagflow("plan", str(dag))
    assert proc.returncode == 0, proc.stderr
    assert (
        "  1. sweep (workflow: inbox_drive_sweep, depends_on: none, queue: io)\n"
        "  2. report (workflow: weekly_report_pack, depends_on: sweep, queue: gpu)\n"
        "  3. brief (workflow: meeting_transcript_brief, depends_on: report, queue: io)\n"
    ) in proc.stdout


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_bad_queue_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    dag = tmp_path / "bad.yaml"
    dag.write_text(QUEUED_DAG.replace("queue: gpu", "queue: 'gpu 1'"))
    proc = dagflow(command, str(dag))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == (
        f"{dag}, task 'report', field 'queue': DagValidationError: expected a queue name "
        "(1-128 letters, digits, '_', '-', '.' or ':', not starting with '-'), "
        "got the string 'gpu 1'\n"
    )


def test_the_embedded_worker_runs_a_dag_with_queues(tmp_path: Path) -> None:
    # Given a DAG on two queues and no broker: the embedded worker must consume both
    dag = tmp_path / "queued.yaml"
    dag.write_text(QUEUED_DAG)
    proc = dagflow(
        "run", "--timeout", "60", str(dag), env={"ORCH_EVENTS_PATH": str(tmp_path / "e")}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Tasks Succeeded: 3" in proc.stdout
    assert "warning" not in proc.stderr


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_run_warns_when_no_live_worker_consumes_a_queue(scratch_redis: str, tmp_path: Path) -> None:
    from tests.support.processes import start_worker, stop_worker, worker_env

    # Given one live worker that consumes only the default queue, celery
    env = worker_env(scratch_redis, tmp_path / "events.jsonl", tmp_path / "state.jsonl")
    worker = start_worker(env, tmp_path / "worker.log", concurrency=1, extra_args=["-Q", "celery"])
    try:
        # And a DAG whose second task is on gpu (its first on the default route)
        dag = tmp_path / "gpu.yaml"
        dag.write_text(
            "name: gpu_dag\ntenant_id: t\ntasks:\n"
            "  - {id: a, workflow_ref: test.echo}\n"
            "  - {id: b, workflow_ref: test.echo, depends_on: [a], queue: gpu}\n"
        )
        cli_env = {k: v for k, v in env.items() if k.startswith(("DAGFLOW_", "ORCH_", "STATE_"))}
        # When it is run with a short timeout
        proc = dagflow("run", "--quiet", "--timeout", "3", str(dag), env=cli_env)
    finally:
        stop_worker(worker)
    # Then one warning line names the queue nobody consumes, and b never ran
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: no live worker consumes queue gpu; steps sent there wait until one does "
        "(celery -A dagflow worker -Q gpu)"
    ], proc.stderr
    assert "celery" not in warnings[0].split(";")[0]
    assert proc.returncode != 0


MAPPED_DAG = """\
name: nightly_files
tenant_id: acme
tasks:
  - {id: list_files, workflow_ref: test.list, params: {n: 4}}
  - {id: process, workflow_ref: test.map_item, depends_on: [list_files], map: list_files.files,
     max_parallel: 2, params: {fail_items: [f2]}}
  - {id: merge, workflow_ref: test.collect, depends_on: [process], trigger_rule: all_done}
"""
MAP_ENV = {"DAGFLOW_WORKFLOWS": "tests.support.workflows"}


def test_plan_shows_a_mapped_task(tmp_path: Path) -> None:
    dag = tmp_path / "mapped.yaml"
    dag.write_text(MAPPED_DAG)
    proc = dagflow("plan", str(dag), env=MAP_ENV)
    assert proc.returncode == 0, proc.stderr
    assert "  2. process[*]  (map over list_files.files) (workflow: test.map_item" in proc.stdout
    assert "max_parallel: 2" in proc.stdout
    assert "process[*]: one step per item of list_files.files, at most 2 at once" in proc.stdout


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ("map: list_files.files", "map", "map: [list_files]"),
        ("map: list_files.files", "map", "map: nowhere.files"),
        ("max_parallel: 2", "max_parallel", "max_parallel: zero"),
        ("fail_items: [f2]", "params.item", "item: 3"),
    ],
)
def test_a_bad_map_exits_2_with_one_line(
    tmp_path: Path, change: str, field: str, message: str
) -> None:
    dag = tmp_path / "bad.yaml"
    dag.write_text(MAPPED_DAG.replace(change, message))
    proc = dagflow("validate", str(dag), env=MAP_ENV)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{dag}, task 'process', field '{field}': ")


def test_max_parallel_without_map_exits_2(tmp_path: Path) -> None:
    dag = tmp_path / "bad.yaml"
    dag.write_text(MAPPED_DAG.replace("trigger_rule: all_done", "max_parallel: 3"))
    proc = dagflow("validate", str(dag), env=MAP_ENV)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"{dag}, task 'merge', field 'max_parallel': DagValidationError: max_parallel applies "
        "to a mapped task only (add map:)\n"
    )


def test_status_and_outputs_of_a_mapped_run(
    redis_env: dict[str, str], celery_worker_proc: object, tmp_path: Path
) -> None:
    # Given a mapped run on the session's workers, one instance of four failing
    dag = tmp_path / "mapped.yaml"
    dag.write_text(MAPPED_DAG)
    env = {k: v for k, v in redis_env.items() if k.startswith(("DAGFLOW_", "ORCH_", "STATE_"))}
    proc = dagflow("run", str(dag), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_id = proc.stdout.split("(run ")[-1].split(")")[0]
    # Then status sums the instances up and lists the failed one
    status = dagflow("status", run_id, env=env)
    assert "Mapped process: 3 ok, 1 failed of 4" in status.stdout, status.stdout
    assert "process[2]" in status.stdout and "process[0]" not in status.stdout
    # and outputs gives the mapped task's list (null for the failed instance), or one instance
    out = dagflow("outputs", run_id, "process", env=env)
    assert json.loads(out.stdout) == [
        {"item": "f0", "index": 0},
        {"item": "f1", "index": 1},
        None,
        {"item": "f3", "index": 3},
    ]
    one = dagflow("outputs", run_id, "process[3]", env=env)
    assert json.loads(one.stdout) == {"item": "f3", "index": 3}
