"""DAGs found by ``name`` or by event in a folder (``DAGFLOW_DAGS_DIR``): what the HTTP API
and ``dagflow trigger`` start.

Every ``.yaml``/``.yml`` file of the folder is loaded with :func:`dagflow.dag.load.load_dag`
(the checks ``dagflow validate`` makes) and indexed by its ``name``. A file that fails them
is left out of the DAGs that can be started, but kept under its ``name`` (or, when even that
cannot be read, its file name without the suffix) with its error, so asking for it says
what is wrong instead of "unknown DAG". Two files with one ``name``: the first by file name
wins and the other is reported as an error of that name.

Like :class:`dagflow.scheduling.schedule_dir.ScheduleDir`, the folder is looked at again on
each use and a file is re-read only when it changed (:mod:`dagflow.dag.folder`), so a DAG
added or fixed is seen without a restart at the cost of one ``stat`` per file.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagflow.dag.folder import Signature, changes, scan
from dagflow.dag.load import Dag, dag_from_data
from dagflow.dag.spec import read_yaml
from dagflow.errors import DagValidationError, SpecError
from dagflow.settings import Settings

#: File name endings read from the DAGs folder.
DAG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CatalogEntry:
    """One DAG file of the folder.

    Attributes:
        name: The DAG's ``name`` (the file's stem when the name cannot be read).
        path: The file.
        tenant_id: The ``tenant_id`` the file names (when it can be read), even if invalid.
        dag: The loaded DAG, or None when the file is invalid.
        error: Why the file cannot be used, or None.
    """

    name: str
    path: Path
    tenant_id: str | None
    dag: Dag | None = None
    error: SpecError | None = None


def _text(data: Any, key: str) -> str | None:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, str) and value else None


def load_entry(path: Path, settings: Settings) -> CatalogEntry:
    """Load one DAG file into an entry (valid or not); never raises a :class:`SpecError`."""
    try:
        data = read_yaml(path)
    except SpecError as exc:
        return CatalogEntry(path.stem, path, None, error=exc)
    name = _text(data, "name") or path.stem
    tenant = _text(data, "tenant_id")
    try:
        dag = dag_from_data(data, str(path), settings)
    except SpecError as exc:
        return CatalogEntry(name, path, tenant, error=exc)
    return CatalogEntry(name, path, tenant, dag=dag)


@dataclass
class DagCatalog:
    """The DAG files of a folder by ``name``, reloaded as files change (thread-safe).

    Args:
        directory: The DAGs folder (``DAGFLOW_DAGS_DIR``).
        settings: The settings DAGs are loaded with (``DAGFLOW_WORKFLOWS``).
    """

    directory: Path
    settings: Settings
    _files: dict[Path, tuple[Signature, CatalogEntry]] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def refresh(self) -> None:
        """Re-read added or changed files and forget removed ones."""
        try:
            found = scan(self.directory, DAG_SUFFIXES)
        except OSError:
            found = {}
        with self._lock:
            diff = changes({p: sig for p, (sig, _) in self._files.items()}, found)
            for gone in diff.gone:
                del self._files[gone]
            for path, signature in diff.changed:
                self._files[path] = (signature, load_entry(path, self.settings))

    def entries(self) -> list[CatalogEntry]:
        """Every file's entry, by file name; a second file with a taken ``name`` becomes an
        error of that name."""
        self.refresh()
        with self._lock:
            loaded = [entry for _, entry in (self._files[p] for p in sorted(self._files))]
        owner: dict[str, Path] = {}
        out = []
        for entry in loaded:
            if entry.name in owner:
                error = DagValidationError(
                    f"duplicate DAG name {entry.name!r}, already in {owner[entry.name]}; ignored",
                    file=str(entry.path),
                    field="name",
                )
                out.append(CatalogEntry(entry.name, entry.path, entry.tenant_id, error=error))
                continue
            owner[entry.name] = entry.path
            out.append(entry)
        return out

    def dags(self) -> list[Dag]:
        """The valid DAGs, by file name."""
        return [entry.dag for entry in self.entries() if entry.dag is not None]

    @property
    def errors(self) -> list[SpecError]:
        """One error per file that cannot be used (every problem of the file in its
        ``errors``), by file name."""
        return [entry.error for entry in self.entries() if entry.error is not None]

    def by_name(self, name: str) -> Dag | None:
        """The valid DAG whose ``name`` is ``name``, or None.

        Raises:
            DagValidationError: Two files of the folder declare that name (the second is
                ignored by :meth:`entries`, but a caller asking by name must not guess).
        """
        entries = self.entries()
        taken = [e for e in entries if e.name == name]
        if len(taken) > 1:
            files = ", ".join(str(e.path) for e in taken)
            raise DagValidationError(
                f"DAG name {name!r} is declared by more than one file ({files})",
                file=str(self.directory),
                field="name",
            )
        return taken[0].dag if taken else None

    def triggered_by(self, event: str, tenant: str | None = None) -> list[Dag]:
        """The valid DAGs whose ``triggers`` list ``event`` (of ``tenant`` only, unless None)."""
        return [
            dag
            for dag in self.dags()
            if event in dag.spec.events and (tenant is None or dag.spec.tenant_id == tenant)
        ]

    def find(self, name: str) -> CatalogEntry | None:
        """The entry of the DAG called ``name`` (valid or not), or None if no file has it."""
        found = [entry for entry in self.entries() if entry.name == name]
        valid = [entry for entry in found if entry.dag is not None]
        best = valid or found
        return best[0] if best else None


def dags_in(folder: str | Path | None = None, settings: Settings | None = None) -> DagCatalog:
    """The catalog of ``folder`` (default ``DAGFLOW_DAGS_DIR``).

    Args:
        folder: The folder; ``settings.dags_dir`` if None.
        settings: Settings (from the environment if None): the workflow modules to check
            ``workflow_ref`` against.

    Raises:
        DagValidationError: The folder does not exist.
    """
    settings = settings or Settings.from_env()
    path = Path(folder) if folder is not None else settings.dags_dir
    if not path.is_dir():
        raise DagValidationError(
            "DAG folder not found (set DAGFLOW_DAGS_DIR to the folder of your DAG files)",
            file=str(path),
        )
    return DagCatalog(path, settings)
