"""Append-only JSON Lines files that many processes can write at once.

Both the event log and the scheduler's state store are JSONL files appended to by many
worker processes. Each record is written as one ``write(2)`` of a whole line on a file
opened with ``O_APPEND`` while holding an exclusive ``flock``, so lines are never torn or
interleaved. Readers stream the file and skip (and count) lines that are not valid JSON
objects, such as a line cut short by a crash or a full disk.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path``, creating the file and its folder.

    Raises:
        OSError: The file cannot be written (callers that must not fail catch this).
        TypeError: ``record`` holds a value JSON cannot encode.
    """
    line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass
class ReadStats:
    """What a read of a JSONL file saw: ``lines`` read and ``skipped`` corrupt lines."""

    lines: int = 0
    skipped: int = 0


def iter_records(
    path: Path, stats: ReadStats | None = None, offset: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield each JSON object in ``path`` in file order, streaming, from byte ``offset``.

    ``offset`` must be the start of a line (see ``dagflow.analytics.tail_offset``). A missing
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
