"""The dagflow error tree.

Every error dagflow raises on purpose derives from :class:`DagflowError`, so a caller can
catch one class. The tree::

    DagflowError
     +-- ConfigError               bad environment or settings
     +-- SpecError                 a DAG or schedule file that cannot be used
     |    +-- DagValidationError   a DAG file that breaks a rule (fields, ids, references)
     |    |    +-- CycleDetectedError
     |    +-- ScheduleError        a schedule file that breaks a rule
     |    +-- UnknownWorkflowError a workflow_ref that is not in the registry (also a RunnerError)
     +-- RunnerError               a run that could not start or a task that failed for good
          +-- WorkflowOutputError  a workflow returned something that is not JSON
          +-- TaskTimeoutError     a task ran past its ``timeout_s``
          +-- PlanVersionError     a stored plan of a format this dagflow cannot read

Errors about user input carry ``file``, ``task`` and ``field`` so the CLI can print one line
that says exactly what to fix.
"""

from __future__ import annotations


class DagflowError(Exception):
    """Raised for any failure dagflow reports on purpose (the root of the tree)."""

    #: The name shown before the message on the one-line error (``CycleDetectedError: ...``).
    headline: str = ""

    def one_line(self) -> str:
        """Return the error as the single line the CLI prints."""
        name = self.headline or type(self).__name__
        return f"{name}: {self}"


class ConfigError(DagflowError):
    """Raised when an environment variable or setting has a value dagflow cannot use."""


class SpecError(DagflowError):
    """Raised when a DAG or schedule file cannot be used.

    Args:
        message: What is wrong, without the location.
        file: The file the problem is in, if known.
        task: The task id (or schedule entry id) the problem is in, if any.
        field: The field the problem is in, if any.
        line: The 1-based line number, when the YAML parser knows it.
    """

    label = "task"
    headline = ""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        task: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.task = task
        self.field = field
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.task:
            where.append(f"{self.label} '{self.task}'")
        if self.field:
            where.append(f"field '{self.field}'")
        location = ", ".join(where)
        return f"{location}: {self.message}" if location else self.message

    def one_line(self) -> str:
        """Return ``file:line, task 'x', field 'y': ErrorName: message``."""
        name = self.headline or type(self).__name__
        location = str(self).removesuffix(self.message).removesuffix(": ")
        return f"{location}: {name}: {self.message}" if location else f"{name}: {self.message}"


class DagValidationError(SpecError):
    """Raised when a DAG file is well-formed YAML but breaks a DAG rule."""


class CycleDetectedError(DagValidationError):
    """Raised when ``depends_on`` edges form a cycle; the message names the cycle's path."""


class ScheduleError(SpecError):
    """Raised when a schedule file or entry is invalid (bad cron, unknown DAG, duplicate id)."""

    label = "schedule"


class RunnerError(DagflowError):
    """Raised when a run cannot be started, or a task failed after all its attempts."""


class UnknownWorkflowError(SpecError, RunnerError):
    """Raised when a ``workflow_ref`` is not in the workflow registry.

    It is both a :class:`SpecError` (the YAML names something that does not exist) and a
    :class:`RunnerError`, and prints as ``RunnerError: Unknown workflow: name`` as the
    original product did.
    """

    headline = "RunnerError"


class WorkflowOutputError(RunnerError):
    """Raised when a workflow returns a value that cannot be serialized to JSON."""


class TaskTimeoutError(RunnerError):
    """Raised inside a task's attempt when the workflow runs longer than its ``timeout_s``."""


class PlanVersionError(RunnerError):
    """Raised when a stored plan was written by a dagflow whose plan format this one cannot read."""
