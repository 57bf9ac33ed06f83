"""Workflows used by the integration tests (loaded through DAGFLOW_WORKFLOWS).

They leave traces in files under ``params["dir"]`` so a test can see, across worker
processes, when each task ran and how many times.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagflow


def _trace(params: Mapping[str, Any], name: str, line: str) -> int:
    """Append ``line`` to ``dir/name`` and return how many lines it now has."""
    path = Path(params["dir"]) / name
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return len(path.read_text().splitlines())


@dagflow.workflow("test.echo")
def echo(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the params it was given, and record that it ran."""
    if "dir" in params:
        _trace(params, "ran.txt", str(params.get("tag", "")))
    return {"params": dict(params)}


@dagflow.workflow("test.value")
def value(params: Mapping[str, Any]) -> Any:
    """Return ``params["value"]`` as is (dicts are namespaced, others become ``__result``)."""
    return params["value"]


@dagflow.workflow("test.sleep")
def sleep(params: Mapping[str, Any]) -> dict[str, float]:
    """Sleep ``seconds`` and return when it started and ended (epoch seconds)."""
    start = time.time()
    time.sleep(float(params.get("seconds", 0.1)))
    return {"start": start, "end": time.time()}


@dagflow.workflow("test.flaky")
def flaky(params: Mapping[str, Any]) -> dict[str, int]:
    """Fail the first ``failures`` attempts, then succeed."""
    attempt = _trace(params, f"flaky-{params['key']}.txt", "attempt")
    if attempt <= int(params["failures"]):
        raise ConnectionError(f"transient failure {attempt}")
    return {"attempts": attempt}


@dagflow.workflow("test.fail")
def fail(params: Mapping[str, Any]) -> None:
    """Always fail."""
    raise ValueError(params.get("message", "boom"))


@dagflow.workflow("test.not_json")
def not_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return a value JSON cannot encode."""
    return {"when": {1, 2, 3}}


@dagflow.workflow("test.pid_sleep")
def pid_sleep(params: Mapping[str, Any]) -> dict[str, int]:
    """Record this process's pid (one line per attempt), then sleep ``seconds``."""
    _trace(params, "pids.txt", str(os.getpid()))
    time.sleep(float(params.get("seconds", 1.0)))
    return {"pid": os.getpid()}


@dagflow.workflow("test.exclusive")
def exclusive(params: Mapping[str, Any]) -> dict[str, int]:
    """Sleep ``seconds`` holding ``dir/running.lock``; trace each call to ``dir/calls.txt``.

    Lines are ``start <pid>``, ``end <pid>``, and ``overlap <pid>`` when another call was
    still running, so a test can prove the workflow never ran twice at the same time.
    """
    lock = Path(params["dir"]) / "running.lock"
    try:
        fd: int | None = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        fd = None
        _trace(params, "calls.txt", f"overlap {os.getpid()}")
    _trace(params, "calls.txt", f"start {os.getpid()}")
    try:
        time.sleep(float(params.get("seconds", 1.0)))
    finally:
        _trace(params, "calls.txt", f"end {os.getpid()}")
        if fd is not None:
            os.close(fd)
            lock.unlink()
    return {"pid": os.getpid()}


@dagflow.workflow("test.sleep_traced")
def sleep_traced(params: Mapping[str, Any]) -> dict[str, float]:
    """Sleep ``seconds``, writing ``start``, a ``tick`` every 0.1 s and ``end`` to spans.txt.

    Each line is ``<kind> <execution id> <epoch seconds>``: an execution killed mid-way
    leaves no ``end``, and its last ``tick`` says when it stopped.
    """
    key = f"{os.getpid()}-{time.monotonic_ns()}"
    _trace(params, "spans.txt", f"start {key} {time.time()}")
    until = time.monotonic() + float(params.get("seconds", 1.0))
    while time.monotonic() < until:
        time.sleep(0.1)
        _trace(params, "spans.txt", f"tick {key} {time.time()}")
    _trace(params, "spans.txt", f"end {key} {time.time()}")
    return {"slept": float(params.get("seconds", 1.0))}


def network_namespace() -> str:
    """This process's network namespace (``net:[<inode>]``): tells the hosts of a test apart."""
    return os.readlink("/proc/self/ns/net")


@dagflow.workflow("test.where_sleep")
def where_sleep(params: Mapping[str, Any]) -> dict[str, Any]:
    """Record ``<pid> <network namespace>`` (one line per attempt), then sleep ``seconds``
    (``again_seconds`` on a later attempt, when given)."""
    attempt = _trace(params, "where.txt", f"{os.getpid()} {network_namespace()}")
    seconds = params.get("again_seconds") if attempt > 1 else None
    time.sleep(float(seconds if seconds is not None else params.get("seconds", 1.0)))
    return {"pid": os.getpid(), "netns": network_namespace()}


@dagflow.workflow("test.count")
def count_calls(params: Mapping[str, Any]) -> dict[str, Any]:
    """Record one call in ``dir/calls-<key>.txt`` and return the key."""
    _trace(params, f"calls-{params['key']}.txt", "call")
    return {"key": params["key"]}


@dagflow.workflow("test.fail_while_flag")
def fail_while_flag(params: Mapping[str, Any]) -> dict[str, Any]:
    """Record the call; fail while the file ``dir/broken`` exists."""
    _trace(params, f"calls-{params['key']}.txt", "call")
    if (Path(params["dir"]) / "broken").exists():
        raise RuntimeError("broken flag is set")
    return {"fixed": True}


@dagflow.workflow("test.context")
def context(params: Mapping[str, Any], ctx: dagflow.RunContext) -> dict[str, Any]:
    """Return the run context this attempt was given (and write it to ``dir`` if given)."""
    fields = {
        "run_id": ctx.run_id,
        "dag_name": ctx.dag_name,
        "tenant_id": ctx.tenant_id,
        "task_id": ctx.task_id,
        "attempt": ctx.attempt,
        "fence": ctx.fence,
        "params": dict(ctx.params),
        "schedule_id": ctx.schedule_id,
        "scheduled_minute": ctx.scheduled_minute,
        "retry_of": ctx.retry_of,
    }
    if "dir" in params:
        import json

        (Path(params["dir"]) / f"ctx-{ctx.task_id}.json").write_text(json.dumps(fields))
    return {"ctx": fields}


@dagflow.workflow("test.context_log")
def context_log(params: Mapping[str, Any], ctx: dagflow.RunContext) -> dict[str, Any]:
    """Append this attempt's run id, tenant, params and scheduled minute to
    ``dir/contexts.jsonl`` (one line per attempt, from any process); sleep ``seconds``."""
    import json

    time.sleep(float(params.get("seconds", 0)))
    fields = {
        "run_id": ctx.run_id,
        "dag_name": ctx.dag_name,
        "tenant_id": ctx.tenant_id,
        "params": dict(ctx.params),
        "scheduled_minute": ctx.scheduled_minute,
    }
    _append(Path(params["dir"]) / "contexts.jsonl", json.dumps(fields))
    return {"ok": True}


def _append(path: Path, line: str) -> None:
    """Append one line with a single O_APPEND write (atomic between processes; no read back)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@dagflow.workflow("test.chaos")
def chaos_step(params: Mapping[str, Any], ctx: dagflow.RunContext) -> dict[str, Any]:
    """A step of the chaos test (:mod:`tests.support.chaos`): traced, flaky, payload-checked.

    It writes ``start``, a ``tick`` every 0.1 s and ``end`` lines to ``dir/spans.txt``, each
    ``<kind> <run id> <task id> <fence> <pid> <epoch seconds>``, so the test can tell when
    each execution of a step was alive (a killed one leaves no ``end``; a frozen one stops
    ticking). While ``ctx.attempt <= failures`` it fails with a retryable error: the attempt
    number comes from the run store, so a crashed execution does not count as a failure.
    Its output is ``v`` plus the sum of its parents' ``value`` outputs and the sorted list
    of parents it heard from: a lost, stale or misrouted payload changes it.

    The same workflow plays the three parts of the chaos DAG's map: with ``items`` it
    returns them (the list its child maps over); as an instance (``ctx.map_index`` set) it
    adds its ``item`` to the value, returns ``item`` and ``index``, and fails only if its
    index is in ``flaky_indexes``; as the child of a mapped task it adds the values of every
    ``P__results`` entry and returns their ``index`` list (which says they came in order).
    """
    spans = Path(params["dir"]) / "spans.txt"
    key = f"{ctx.run_id} {ctx.task_id} {ctx.fence} {os.getpid()}"
    _append(spans, f"start {key} {time.time()}")
    until = time.monotonic() + float(params.get("seconds", 0.1))
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(0.1, left))
        _append(spans, f"tick {key} {time.time()}")
    value, results = "__value", "__results"
    parents = sorted(k[: -len(value)] for k in params if k.endswith(value))
    total = int(params["v"]) + sum(int(params[f"{p}{value}"]) for p in parents)
    out: dict[str, Any] = {}
    for mapped in sorted(k[: -len(results)] for k in params if k.endswith(results)):
        got = params[f"{mapped}{results}"]
        total += sum(int(r["value"]) for r in got)
        out["indexes"] = [r["index"] for r in got]
        parents = sorted([*parents, mapped])
    if ctx.map_index is not None:
        total += int(params["item"])
        out.update(item=params["item"], index=ctx.map_index)
    if "items" in params:
        out["items"] = list(params["items"])
    _append(spans, f"end {key} {time.time()}")
    failures = int(params.get("failures", 0))
    if ctx.map_index is not None and ctx.map_index not in params.get("flaky_indexes", ()):
        failures = 0
    if ctx.attempt <= failures:
        raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
    return {"value": total, "parents": parents, **out}


@dagflow.workflow("test.list")
def make_list(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{"files": [...]}``: ``params["items"]`` or ``f0 .. f<n-1>``, plus ``extra``."""
    items = params.get("items")
    if items is None:
        items = [f"f{i}" for i in range(int(params.get("n", 3)))]
    return {"files": items, **dict(params.get("extra") or {})}


@dagflow.workflow("test.map_item")
def map_item(params: Mapping[str, Any], ctx: dagflow.RunContext) -> dict[str, Any]:
    """One instance of a mapped task: returns its item and index.

    With ``dir``, writes ``start``/``end`` lines ``<kind> <task id> <fence> <pid> <epoch>``
    to ``dir/map.txt``; sleeps ``seconds``; fails when its item is in ``fail_items`` (while
    the file ``fail_while`` exists, if given).
    """
    key = f"{ctx.task_id} {ctx.fence} {os.getpid()}"
    if "dir" in params:
        _append(Path(params["dir"]) / "map.txt", f"start {key} {time.time()}")
    time.sleep(float(params.get("seconds", 0)))
    bad = params["item"] in (params.get("fail_items") or ())
    if bad and ("fail_while" not in params or Path(params["fail_while"]).exists()):
        raise ValueError(f"item {params['item']!r} is bad")
    if "dir" in params:
        _append(Path(params["dir"]) / "map.txt", f"end {key} {time.time()}")
    return {"item": params["item"], "index": ctx.map_index}


@dagflow.workflow("test.collect")
def collect(params: Mapping[str, Any], ctx: dagflow.RunContext) -> dict[str, Any]:
    """Return what the mapped task ``process`` gave it (``process__results``); with ``dir``,
    record the call in ``dir/collect.txt``."""
    if "dir" in params:
        _append(Path(params["dir"]) / "collect.txt", f"{ctx.task_id} {ctx.fence}")
    results = params.get("process__results")
    return {"n": None if results is None else len(results), "results": results}


def _hook_dir() -> Path:
    """Where the hook workflows leave their traces (``DAGFLOW_TEST_HOOK_DIR``)."""
    return Path(os.environ["DAGFLOW_TEST_HOOK_DIR"])


@dagflow.workflow("test.hook_record")
def hook_record(params: Mapping[str, Any]) -> None:
    """A hook: append the run summary it was called with to ``hooks.jsonl``."""
    line = json.dumps(dict(params), default=str)
    _trace({"dir": str(_hook_dir())}, "hooks.jsonl", line)


@dagflow.workflow("test.hook_fail")
def hook_fail(params: Mapping[str, Any]) -> None:
    """A hook that always fails."""
    _trace({"dir": str(_hook_dir())}, "hook_fail.txt", str(params.get("run_id")))
    raise RuntimeError("the pager is down")


@dagflow.workflow("test.hook_kill_once")
def hook_kill_once(params: Mapping[str, Any]) -> None:
    """A hook whose first call SIGKILLs its own worker's process group (main process and
    pool: the test started that worker in a session of its own); later calls record."""
    marker = _hook_dir() / "killed.txt"
    # Only in a worker the test started for this (never the test's own process group).
    if not marker.exists() and os.environ.get("DAGFLOW_TEST_KILL_GROUP") == "1":
        marker.write_text(str(os.getpid()))
        os.killpg(os.getpgrp(), signal.SIGKILL)
    hook_record(params)


def _digest(value: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dagflow.workflow("test.big")
def big(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return about ``mb`` MB of JSON: ``rows``, a list of ``mb * 1000`` strings of ~1 kB
    (``items``: that many short strings instead, a list to map over)."""
    if "items" in params:
        return {"rows": [f"item-{i:06d}-" + "y" * 40 for i in range(int(params["items"]))]}
    tag = str(params.get("tag", "x"))
    rows = [f"{i:08d}" + tag * (1000 - 8) for i in range(int(float(params["mb"]) * 1000))]
    return {"rows": rows}


@dagflow.workflow("test.digest")
def digest(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the length and SHA-256 of the param named by ``key`` (a parent's output)."""
    value = params[params["key"]]
    return {"n": len(value), "sha256": _digest(value)}


@dagflow.workflow("test.secret_use")
def secret_use(params: Mapping[str, Any], ctx: dagflow.RunContext) -> dict[str, Any]:
    """Use ``password`` (a task param) and ``token`` (a run-level param), both secrets:
    return their digests, and the password itself (which dagflow must redact). With
    ``raise``, fail with an error that holds the password."""
    password, token = params["password"], ctx.params["token"]
    if params.get("raise"):
        raise PermissionError(f"login refused for password {password}")
    return {
        "password_sha256": _digest(password),
        "token_sha256": _digest(token),
        "leak": f"the password is {password}",
    }


@dagflow.workflow("test.flaky_gate")
def flaky_gate(params: Mapping[str, Any]) -> dict[str, Any]:
    """Fail while the file ``gate`` exists; then return how many rows its parent gave."""
    if Path(params["gate"]).exists():
        raise RuntimeError("the gate file is still there")
    return {"n": len(params.get("big__rows") or ())}
