"""A folder of schedule files (``DAGFLOW_SCHEDULES_DIR``), reloaded as its files change.

:class:`ScheduleDir` is what every scheduler (``dagflow schedule``, Celery Beat) and a
backfill read: the schedules of every file that passes its checks, and the errors of those
that do not, re-reading a file only when its (mtime, size, inode) changed.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

from dagflow.dag.folder import Signature, changes, scan
from dagflow.errors import ScheduleError, SpecError
from dagflow.scheduling.schedules import SCHEDULE_SUFFIXES, Schedule, load_schedule_file

logger = logging.getLogger(__name__)


@dataclass
class _LoadedFile:
    signature: Signature
    schedules: list[Schedule]
    error: ScheduleError | None = None


@dataclass
class ScheduleDir:
    """The schedules of a directory, reloaded by :meth:`refresh` when a file changes.

    A file is re-read when its (mtime, size, inode) changes, so a tick costs one ``stat``
    per file. A file that turns bad keeps its last good entries (logged once per change);
    a file that is removed takes its entries with it. An id used in two files is kept in
    the first file by name and refused in the other.

    Args:
        directory: The schedules directory.
        root: The deployment root for ``dag`` paths (the working directory if None).
    """

    directory: Path
    root: Path | None = None
    _files: dict[Path, _LoadedFile] = field(default_factory=dict, init=False, repr=False)
    _schedules: tuple[Schedule, ...] = field(default=(), init=False, repr=False)

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """The current schedules, disabled ones included."""
        return self._schedules

    @property
    def errors(self) -> list[ScheduleError]:
        """The errors of files whose current version is bad."""
        return [f.error for f in self._files.values() if f.error is not None]

    def refresh(self) -> bool:
        """Re-read added or changed files and forget removed ones; True if anything changed."""
        try:
            found = scan(self.directory, SCHEDULE_SUFFIXES)
        except OSError as exc:
            logger.error("dagflow: cannot read schedules directory %s: %s", self.directory, exc)
            return False
        diff = changes({p: f.signature for p, f in self._files.items()}, found)
        for gone in diff.gone:
            logger.info("dagflow: schedule file %s was removed", gone)
            del self._files[gone]
        for path, signature in diff.changed:
            known = self._files.get(path)
            try:
                loaded = load_schedule_file(path, self.root)
            except ScheduleError as exc:
                kept = known.schedules if known else []
                self._files[path] = _LoadedFile(signature, kept, exc)
                for line in exc.lines():
                    logger.error(
                        "dagflow: %s; keeping the last good version (%d schedules)",
                        line,
                        len(kept),
                    )
                continue
            self._files[path] = _LoadedFile(signature, loaded)
            logger.info("dagflow: loaded %d schedules from %s", len(loaded), path)
        changed = bool(diff.gone or diff.changed)
        if changed:
            self._merge()
            # The schedules live as long as the process: move them out of the garbage
            # collector's reach, so a full collection during a tick does not walk 10,000
            # schedules and their cron tables (tens of ms at a minute boundary).
            gc.collect()
            gc.freeze()
        return changed

    def _merge(self) -> None:
        merged: dict[str, Schedule] = {}
        owner: dict[str, Path] = {}
        for path in sorted(self._files):
            for schedule in self._files[path].schedules:
                if schedule.id in merged:
                    logger.error(
                        "%s",
                        ScheduleError(
                            f"duplicate id, already defined in {owner[schedule.id]}; ignored",
                            file=str(path),
                            task=schedule.id,
                            field="id",
                        ).one_line(),
                    )
                    continue
                merged[schedule.id] = schedule
                owner[schedule.id] = path
        self._schedules = tuple(merged.values())


def load_schedule_dir(directory: Path, root: Path | None = None) -> list[Schedule]:
    """Load every schedule file of ``directory`` strictly (for ``--once`` and validation).

    Raises:
        ScheduleError: The directory is missing, a file is bad, or an id is used twice (every
            problem of every file is in ``errors``).
    """
    if not directory.is_dir():
        raise ScheduleError("schedules directory not found", file=str(directory))
    schedules: list[Schedule] = []
    problems: list[SpecError] = []
    owner: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in SCHEDULE_SUFFIXES or not path.is_file():
            continue
        try:
            loaded = load_schedule_file(path, root)
        except ScheduleError as exc:
            problems.append(exc)
            continue
        for schedule in loaded:
            if schedule.id in owner:
                problems.append(
                    ScheduleError(
                        f"duplicate id, already defined in {owner[schedule.id]}",
                        file=str(path),
                        task=schedule.id,
                        field="id",
                    )
                )
                continue
            owner[schedule.id] = path
            schedules.append(schedule)
    if problems:
        raise ScheduleError.collect(problems)
    return schedules
