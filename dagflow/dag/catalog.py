"""The DAGs of a folder (``DAGFLOW_DAGS_DIR``, default ``dags/``), found by name or by event.

Schedules name their DAG file; events (``dagflow trigger``) and the HTTP API name a DAG by its
``name`` or by an event in its ``triggers``, so they need every DAG of the deployment's DAG
folder. :func:`dags_in` reads it: every ``*.yaml``/``*.yml`` file, loaded and checked like
``dagflow validate`` does. A bad file does not hide the good ones: its problems are kept in
:attr:`DagCatalog.errors` (one :class:`~dagflow.errors.SpecError` per file) for the caller to
report.

A name used by two files is ambiguous: :meth:`DagCatalog.by_name` refuses it rather than pick
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagflow.dag.load import Dag, load_dag
from dagflow.errors import DagValidationError, SpecError
from dagflow.settings import Settings

#: File name endings read from a DAG folder.
DAG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class DagCatalog:
    """The DAGs of one folder.

    Attributes:
        folder: The folder that was read.
        dags: Every valid DAG, by file name.
        errors: One error per file that could not be loaded (every problem of the file in
            its ``errors``).
    """

    folder: Path
    dags: tuple[Dag, ...]
    errors: tuple[SpecError, ...] = ()

    def by_name(self, name: str) -> Dag | None:
        """The DAG whose ``name`` is ``name``, or None.

        Raises:
            DagValidationError: Two files of the folder declare that name.
        """
        found = [dag for dag in self.dags if dag.name == name]
        if len(found) > 1:
            files = ", ".join(dag.source for dag in found)
            raise DagValidationError(
                f"DAG name {name!r} is declared by more than one file ({files})",
                file=str(self.folder),
                field="name",
            )
        return found[0] if found else None

    def triggered_by(self, event: str, tenant: str | None = None) -> list[Dag]:
        """The DAGs whose ``triggers`` list ``event`` (of ``tenant`` only, unless None)."""
        return [
            dag
            for dag in self.dags
            if event in dag.spec.events and (tenant is None or dag.spec.tenant_id == tenant)
        ]


def dags_in(folder: str | Path | None = None, settings: Settings | None = None) -> DagCatalog:
    """Load every DAG file of ``folder`` (default ``DAGFLOW_DAGS_DIR``).

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
    dags: list[Dag] = []
    errors: list[SpecError] = []
    for file in sorted(path.iterdir()):
        if file.suffix not in DAG_SUFFIXES or not file.is_file():
            continue
        try:
            dags.append(load_dag(file, settings))
        except SpecError as exc:
            errors.append(exc)
    return DagCatalog(folder=path, dags=tuple(dags), errors=tuple(errors))
