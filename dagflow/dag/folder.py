"""What changed in a folder of YAML files since the last look: one ``stat`` per file.

The DAGs folder (:class:`dagflow.dag.catalog.DagCatalog`) and the schedules folder
(:class:`dagflow.scheduling.schedule_dir.ScheduleDir`) are looked at again on each use, so
a file added or fixed is seen without a restart. A file is re-read only when its
(mtime, size, inode) signature changed: an editor that replaces a file changes its inode
even when the size and the second of the mtime stay the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: A file's (mtime in ns, size, inode): when it changes, the file is read again.
Signature = tuple[int, int, int]


@dataclass(frozen=True)
class FolderChanges:
    """The difference between the files known and the files there now.

    Attributes:
        gone: Known files that are no longer there.
        changed: Files that are new or whose signature changed, by name, with it.
    """

    gone: list[Path]
    changed: list[tuple[Path, Signature]]


def scan(directory: Path, suffixes: tuple[str, ...]) -> dict[Path, Signature]:
    """The files of ``directory`` ending in one of ``suffixes``, by name, with their signature.

    A file removed between the listing and its ``stat`` is left out.

    Raises:
        OSError: The folder cannot be listed.
    """
    found: dict[Path, Signature] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in suffixes and p.is_file()):
        try:
            st = path.stat()
        except OSError:
            continue
        found[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return found


def changes(known: Mapping[Path, Signature], now: Mapping[Path, Signature]) -> FolderChanges:
    """What to forget and what to read again, from the signatures known and found (pure)."""
    return FolderChanges(
        gone=sorted(set(known) - set(now)),
        changed=[(path, sig) for path, sig in now.items() if known.get(path) != sig],
    )
