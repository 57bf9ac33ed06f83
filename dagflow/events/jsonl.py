"""Append-only JSON Lines files that many processes can write at once.

Both the event log and the scheduler's state store are JSONL files appended to by many
worker processes. Each record is written as one ``write(2)`` of a whole line on a file
opened with ``O_APPEND`` while holding an exclusive ``flock``, so lines are never torn or
interleaved. Readers stream the file (or only its tail, for the newest records) and skip (and
count) lines that are not valid JSON objects, such as a line cut short by a crash or a full
disk.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def encode_line(record: Mapping[str, Any]) -> bytes:
    """``record`` as one compact JSON line (raises TypeError for a non-JSON value)."""
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _open(path: Path) -> int:
    if not path.parent.is_dir():
        # A relative ORCH_EVENTS_PATH/STATE_STORE_PATH lands wherever the process was started:
        # say where, so a log written from the wrong folder is found, not lost.
        logger.warning("dagflow: creating %s for %s", path.parent.resolve(), path.name)
        path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _locked_write(fd: int, data: bytes) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def append_records(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append each record as one JSON line to ``path``, with one open and one lock.

    The file and its folder are created if needed. A batch is written by one ``write(2)``
    under the lock, so other writers' lines never land inside it.

    Raises:
        OSError: The file cannot be written (callers that must not fail catch this).
        TypeError: A record holds a value JSON cannot encode (nothing is written).
    """
    data = b"".join(encode_line(record) for record in records)
    if not data:
        return
    fd = _open(path)
    try:
        _locked_write(fd, data)
    finally:
        os.close(fd)


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line; see :func:`append_records`."""
    append_records(path, (record,))


class AppendFile:
    """A JSONL file kept open by one process for many appends (the event log's hot path).

    The descriptor is reopened after a fork (each process needs its own) and when the file
    was removed or renamed away (log rotation), so lines never go to a deleted file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()
        _open_files.add(self)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line. Raises OSError or TypeError like :func:`append_record`."""
        data = encode_line(record)
        with self._lock:
            fd = self._current()
            _locked_write(fd, data)

    def _current(self) -> int:
        if self._fd is not None and self._pid == os.getpid():
            try:
                if os.fstat(self._fd).st_nlink > 0 and self.path.exists():
                    return self._fd
            except OSError:
                pass
            os.close(self._fd)
        self._fd, self._pid = _open(self.path), os.getpid()
        return self._fd


#: Every AppendFile of this process, for :func:`_fresh_locks_in_child`.
_open_files: weakref.WeakSet[AppendFile] = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    """Give a forked process unlocked copies of the files' locks.

    A worker's sweeper thread writes events while the main thread may fork a new pool
    process; a child that inherited a lock held at that moment would block on it forever at
    its first event.
    """
    for append_file in list(_open_files):
        append_file._lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


@dataclass
class ReadStats:
    """What a read of a JSONL file saw: ``lines`` read and ``skipped`` corrupt lines."""

    lines: int = 0
    skipped: int = 0


def iter_records(
    path: Path, stats: ReadStats | None = None, offset: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield each JSON object in ``path`` in file order, streaming, from byte ``offset``.

    ``offset`` must be the start of a line (see :func:`tail_offset`). A missing
    file yields nothing. A line that is not a JSON object (torn, truncated or
    corrupt) is skipped and counted in ``stats.skipped``; it never raises.
    """
    stats = stats if stats is not None else ReadStats()
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.strip():
                continue
            stats.lines += 1
            try:
                record = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                stats.skipped += 1
                continue
            if not isinstance(record, dict):
                stats.skipped += 1
                continue
            yield record


def read_tail(path: str | Path, limit: int, stats: ReadStats | None = None) -> list[dict[str, Any]]:
    """Return the last ``limit`` records of the JSONL file at ``path``, oldest first.

    Only the tail of the file is read and parsed: the reader seeks back from the end to the
    start of the last ``limit`` lines, so a dashboard over a huge log costs what its window
    costs. Memory stays bounded by ``limit``. A missing file gives an empty list; corrupt lines
    are skipped as by :func:`iter_records`.

    Args:
        path: The JSONL file.
        limit: How many of the newest records to keep.
        stats: Filled with the lines read (from the tail) and the corrupt lines skipped.
    """
    path = Path(path)
    limit = max(limit, 0)
    wanted = limit
    while True:
        attempt = ReadStats()
        try:
            offset = tail_offset(path, wanted)
        except FileNotFoundError:
            return []
        records = deque(iter_records(path, attempt, offset), maxlen=limit)
        # Corrupt or blank lines in the tail leave us short: reach further back, rarely.
        if len(records) >= limit or offset == 0:
            if stats is not None:
                stats.lines, stats.skipped = attempt.lines, attempt.skipped
            return list(records)
        wanted += (limit - len(records)) * 2 + 16


def tail_offset(path: Path, lines: int, block: int = 1 << 20) -> int:
    """Return the byte offset where the last ``lines`` lines of ``path`` start (0 if fewer).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    with path.open("rb") as handle:
        end = pos = handle.seek(0, 2)
        if lines <= 0:
            return end
        handle.seek(end - 1 if end else 0)
        # A torn last line has no newline of its own, so one fewer newline bounds the tail.
        need = lines if handle.read(1) == b"\n" else lines - 1
        count = 0
        while pos > 0:
            size = min(block, pos)
            pos -= size
            handle.seek(pos)
            chunk = handle.read(size)
            found = chunk.count(b"\n")
            if count + found > need:
                # The boundary is the newline with exactly ``need`` newlines after it.
                index = -1
                for _ in range(count + found - need):
                    index = chunk.index(b"\n", index + 1)
                return pos + index + 1
            count += found
        return 0
