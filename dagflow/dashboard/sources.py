"""The dashboard's view of the JSONL files: the newest records, re-read only on change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagflow.events.jsonl import ReadStats, read_tail

Reader = Callable[[Path, int, ReadStats], list[dict[str, Any]]]


class CachedLog:
    """The newest ``limit`` records of a JSONL file, cached until its size or mtime changes.

    Every refresh of every browser tab asks for the same file; reading it once per change
    keeps a refresh cheap however many people watch.

    Args:
        path: The JSONL file (the event log or the state store).
        limit: How many of the newest records to keep in memory.
        reader: Reads ``limit`` records and fills the stats (:func:`read_tail`).
    """

    def __init__(self, path: Path, limit: int, reader: Reader = read_tail) -> None:
        self.path = Path(path)
        self.limit = limit
        self._reader = reader
        self._lock = threading.Lock()
        self._signature: tuple[int, int] | None = None
        self._records: list[dict[str, Any]] = []
        self._stats = ReadStats()

    def _current_signature(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def read(self) -> tuple[list[dict[str, Any]], ReadStats]:
        """Return the cached records and the stats of the read that produced them."""
        with self._lock:
            signature = self._current_signature()
            if signature is None:
                self._signature, self._records, self._stats = None, [], ReadStats()
            elif signature != self._signature:
                stats = ReadStats()
                self._records = self._reader(self.path, self.limit, stats)
                self._signature, self._stats = signature, stats
            return self._records, self._stats
