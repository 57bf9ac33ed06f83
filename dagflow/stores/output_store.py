"""The output store: where outputs too large for the run store are kept, through fsspec.

``DAGFLOW_OUTPUT_STORE`` is any fsspec URL: a local or shared folder (``file:///srv/dagflow/
outputs``), an S3-compatible bucket (``s3://bucket/prefix``, through ``s3fs``), GCS, Azure,
or ``memory://`` (one process: the tests' twin). Credentials and endpoints come from where
the filesystem's library reads them (``AWS_*`` variables and ``~/.aws`` for S3, or
``FSSPEC_S3_ENDPOINT_URL``-style variables that fsspec turns into storage options).

Layout, one folder per run, so a run's objects are deleted with one recursive remove::

    <store>/<run_id>/<task_id>/<fence>.json          the committed attempt's output
    <store>/<run_id>/<task_id>/.<fence>-<uuid>.tmp   an object being written
    <store>/<run_id>/<task_id>/reused.json           a retry's copy of a reused output

(an instance ``process[3]`` is the folder ``process@3``: brackets are globs to fsspec).

An object is written under a temporary name and then moved to its final name: a worker
killed mid-write leaves only a ``.tmp`` that nothing refers to, never a half object under a
name a reference holds. Each attempt writes under its own fencing number, so a late holder
that lost its lease never replaces the object the committed attempt wrote.
"""

from __future__ import annotations

import uuid
from typing import Any

from fsspec.core import url_to_fs

from dagflow.errors import OutputMissingError, OutputStoreError

#: Bytes written per call while an object is written (a killed writer leaves a partial .tmp).
CHUNK_BYTES = 1 << 20


def path_part(task_id: str) -> str:
    """A task id as a path component: an instance's ``[3]`` is a glob to fsspec, so
    ``process[3]`` is written ``process@3`` (task ids never hold ``@``)."""
    return task_id.replace("[", "@").replace("]", "")


def object_url(base: str, run_id: str, task_id: str, fence: int | str) -> str:
    """The URL of a task's output written under ``fence`` (``reused`` for a retry's copy)."""
    return f"{base.rstrip('/')}/{run_id}/{path_part(task_id)}/{fence}.json"


def run_url(base: str, run_id: str) -> str:
    """The folder of one run's objects."""
    return f"{base.rstrip('/')}/{run_id}"


def _fs(url: str) -> tuple[Any, str]:
    """The filesystem and path of ``url`` (fsspec keeps one instance per set of options)."""
    fs, path = url_to_fs(url, auto_mkdir=True) if url.startswith("file:") else url_to_fs(url)
    return fs, path


class OutputStore:
    """Objects under one base URL (``DAGFLOW_OUTPUT_STORE``).

    Args:
        base: The store's fsspec URL.

    Every method raises :class:`~dagflow.errors.OutputStoreError` (or its
    :class:`~dagflow.errors.OutputMissingError`) naming the run, task and URL, never an
    fsspec, botocore or OS error.
    """

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def put(self, run_id: str, task_id: str, fence: int | str, data: bytes) -> str:
        """Write ``data`` as the output of ``task_id`` under ``fence``; return its URL.

        Written to a temporary name, then moved: the final name holds a whole object or
        nothing.
        """
        url = object_url(self.base, run_id, task_id, fence)
        tmp = f"{self.base}/{run_id}/{path_part(task_id)}/.{fence}-{uuid.uuid4().hex}.tmp"
        try:
            fs, tmp_path = _fs(tmp)
            _, path = _fs(url)
            with fs.open(tmp_path, "wb") as f:
                for at in range(0, len(data), CHUNK_BYTES):
                    f.write(data[at : at + CHUNK_BYTES])
            fs.mv(tmp_path, path)
        except Exception as exc:
            raise OutputStoreError(
                f"cannot write the output of task '{task_id}' of run {run_id} to {url}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return url

    def copy(self, url: str, run_id: str, task_id: str) -> str:
        """Copy the object at ``url`` into run ``run_id``'s folder (a retry's reused output,
        so it lives as long as the run that reuses it); return the copy's URL."""
        target = object_url(self.base, run_id, task_id, "reused")
        try:
            fs, path = _fs(url)
            target_fs, target_path = _fs(target)
            if target_fs is fs or type(target_fs) is type(fs):
                fs.copy(path, target_path)  # server-side on object stores
            else:
                target_fs.pipe_file(target_path, fs.cat_file(path))
        except FileNotFoundError as exc:
            raise OutputMissingError(
                f"the output of task '{task_id}' is missing from the output store: {url}"
            ) from exc
        except Exception as exc:
            raise OutputStoreError(
                f"cannot copy the output of task '{task_id}' from {url} to {target}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return target

    def delete_run(self, run_id: str) -> None:
        """Delete every object of run ``run_id`` (nothing to delete is fine)."""
        url = run_url(self.base, run_id)
        try:
            fs, path = _fs(url)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise OutputStoreError(
                f"cannot delete the outputs of run {run_id} at {url}: {type(exc).__name__}: {exc}"
            ) from exc

    def delete(self, url: str) -> None:
        """Delete one object (a late holder's, whose commit was refused); gone is fine."""
        try:
            fs, path = _fs(url)
            fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise OutputStoreError(f"cannot delete {url}: {type(exc).__name__}: {exc}") from exc


def read_object(url: str, run_id: str, task_id: str) -> bytes:
    """The bytes of the object at ``url`` (any store: a reference carries its whole URL).

    Raises:
        OutputMissingError: The object is gone.
        OutputStoreError: The store could not be read.
    """
    try:
        fs, path = _fs(url)
        data: bytes = fs.cat_file(path)
        return data
    except FileNotFoundError as exc:
        raise OutputMissingError(
            f"the output of task '{task_id}' of run {run_id} is missing from the output "
            f"store: {url}"
        ) from exc
    except Exception as exc:
        raise OutputStoreError(
            f"cannot read the output of task '{task_id}' of run {run_id} from {url}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def exists(url: str) -> bool:
    """True if an object or folder is at ``url`` (tests, the sweep's report)."""
    fs, path = _fs(url)
    return bool(fs.exists(path))


__all__ = ["OutputStore", "exists", "object_url", "read_object", "run_url"]
