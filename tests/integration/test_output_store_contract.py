"""The output store and its index, one contract on every kind: a folder (``file://``), a
real S3 endpoint (a ``moto_server`` process through ``s3fs``) and fsspec's ``memory://``;
the index in memory and in Redis."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dagflow.errors import OutputMissingError, OutputTooLargeError
from dagflow.execution.outputs import REF_KEY, Outputs
from dagflow.execution.secrets import Redactor
from dagflow.keys import run_key
from dagflow.stores.output_index import MemoryOutputIndex, OutputIndex, RedisOutputIndex
from dagflow.stores.output_store import OutputStore, exists, read_object, run_url
from tests.support.moto import MotoServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)  # s3fs (botocore) reads the endpoint and keys from here
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(params=["file", "s3", "memory"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The base URL of an empty store of each kind."""
    if request.param == "file":
        return (tmp_path / "outputs").as_uri()
    if request.param == "s3":
        server: MotoServer = request.getfixturevalue("moto")
        return server.make_bucket(f"b-{uuid.uuid4().hex[:12]}") + "/dagflow"
    return f"memory://dagflow-test-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "redis"])
def index(request: pytest.FixtureRequest) -> OutputIndex:
    if request.param == "memory":
        return MemoryOutputIndex()
    return RedisOutputIndex(request.getfixturevalue("scratch_redis"))


def test_an_object_is_written_whole_under_its_fence_and_read_back(base: str) -> None:
    store = OutputStore(base)
    data = json.dumps({"rows": list(range(200_000))}).encode()
    url = store.put("run1", "process[3]", 2, data)
    assert url == f"{base}/run1/process@3/2.json"
    assert read_object(url, "run1", "process[3]") == data
    # Nothing is left under a temporary name.
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(run_url(base, "run1"))
    assert [p.rsplit("/", 1)[-1] for p in fs.find(path)] == ["2.json"]
    # A later holder writes its own object: the committed one is never replaced.
    later = store.put("run1", "process[3]", 3, b"[]")
    assert read_object(url, "run1", "process[3]") == data and later != url


def test_a_missing_object_is_one_line_naming_run_task_and_url(base: str) -> None:
    store = OutputStore(base)
    url = store.put("run1", "extract", 1, b"{}")
    store.delete_run("run1")
    assert not exists(url)
    with pytest.raises(OutputMissingError) as err:
        read_object(url, "run1", "extract")
    line = err.value.one_line()
    assert "\n" not in line and "run1" in line and "'extract'" in line and url in line


def test_a_copy_belongs_to_the_new_run(base: str) -> None:
    store = OutputStore(base)
    url = store.put("old", "extract", 1, b'{"a": 1}')
    copy = store.copy(url, "new", "extract")
    assert copy == f"{base}/new/extract/reused.json"
    store.delete_run("old")
    assert read_object(copy, "new", "extract") == b'{"a": 1}'


def test_outputs_over_the_inline_limit_go_by_reference_and_resolve(base: str) -> None:
    outputs = Outputs(1024, 10_000_000, 60, OutputStore(base), MemoryOutputIndex())
    assert outputs.encode("r", "small", 1, {"a": 1}) == '{"a":1}'
    value = {"rows": ["x" * 100] * 100, "token": "s3cr3t-value"}
    raw = outputs.encode("r", "big", 1, value, Redactor.of(["s3cr3t-value"]))
    ref = json.loads(raw)
    assert ref[REF_KEY].endswith("/r/big/1.json") and ref["run"] == "r" and ref["task"] == "big"
    assert outputs.load(raw) == {**value, "token": "***"}
    # A mapped task's results hold its instances' references: resolved too.
    assert outputs.load('{"results":[' + raw + ',{"a":1},null]}')["results"][1:] == [{"a": 1}, None]
    # Copied for a retry, the copy resolves after the old run's objects are gone.
    copied = outputs.copy_reused({"big": raw, "small": '{"a":1}'}, "r2")
    assert copied["small"] == '{"a":1}'
    outputs.store.delete_run("r")  # type: ignore[union-attr]
    assert outputs.load(copied["big"])["rows"] == value["rows"]


def test_over_the_caps_is_one_line_naming_the_setting() -> None:
    capped = Outputs(1024, 4096, 60, None, MemoryOutputIndex())
    with pytest.raises(OutputTooLargeError, match="DAGFLOW_OUTPUT_MAX \\(4096\\)"):
        capped.encode("r", "t", 1, "x" * 5000)
    with pytest.raises(OutputTooLargeError, match="DAGFLOW_OUTPUT_STORE is not set"):
        capped.encode("r", "t", 1, "x" * 2000)


def test_the_sweep_deletes_the_objects_of_expired_runs(base: str, index: OutputIndex) -> None:
    outputs = Outputs(16, 10_000_000, 3600, OutputStore(base), index)
    kept = outputs.encode("kept", "t", 1, "x" * 100)
    gone = outputs.encode("gone", "t", 1, "x" * 100)
    index.track("gone", 0)  # its state expires now (GT keeps the later time on Redis...)
    if isinstance(index, RedisOutputIndex):
        index.client.zadd("dagflow:outputs", {"gone": 0})  # ...so set it as expired
    else:
        index._due["gone"] = 0  # type: ignore[attr-defined]
    assert outputs.sweep() == 1
    assert not exists(json.loads(gone)[REF_KEY])
    assert exists(json.loads(kept)[REF_KEY])
    assert "gone" not in index.runs() and "kept" in index.runs()


def test_redis_index_keeps_a_due_run_whose_state_still_exists(scratch_redis: str) -> None:
    index = RedisOutputIndex(scratch_redis)
    client = redis.Redis.from_url(scratch_redis)
    client.set(run_key("alive", "meta"), "x", px=60_000)
    client.zadd("dagflow:outputs", {"alive": 0, "dead": 0})
    assert index.due(10) == ["dead"]
    score = client.zscore("dagflow:outputs", "alive")
    assert score is not None and score > 0  # re-armed to the state's own expiry
