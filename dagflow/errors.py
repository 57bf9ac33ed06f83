"""The dagflow error tree.

Every error dagflow raises on purpose derives from :class:`DagflowError`, so a caller can
catch one class. The tree::

    DagflowError
     +-- ConfigError               bad environment or settings
     +-- SpecError                 a DAG or schedule file that cannot be used
     |    +-- DagValidationError   a DAG file that breaks a rule (fields, ids, references)
     |    |    +-- CycleDetectedError
     |    +-- ScheduleError        a schedule file that breaks a rule
     |    +-- EventError           an event trigger's name, id or data that cannot be used
     |    +-- UnknownWorkflowError a workflow_ref that is not in the registry (also a RunnerError)
     +-- RunnerError               a run that could not start or a task that failed for good
     |    +-- WorkflowOutputError  a workflow returned something that is not JSON
     |    |    +-- BranchOutputError  a branch task's output names no valid ``branch``
     |    |    +-- OutputTooLargeError  an output over DAGFLOW_OUTPUT_MAX, or over the inline
     |    |                             limit with no output store to hold it
     |    +-- OutputStoreError     the output store could not write or read an object
     |    |    +-- OutputMissingError  a referenced output's object is gone
     |    +-- SecretError          a ``{secret: NAME}`` param the worker cannot resolve
     |    +-- TaskTimeoutError     a task ran past its ``timeout_s``
     |    +-- PlanVersionError     a stored plan of a format this dagflow cannot read
     |    +-- RunExistsError       a run id fixed in advance is taken (a retry started twice)
     +-- UnreachableError          Redis or the broker cannot be reached
     +-- ApiError                  an HTTP API request refused (its status, code and field)
          +-- AuthError            a missing, unknown or revoked API token (401)

Errors about user input carry ``file``, ``task`` and ``field`` so the CLI can print one line
that says exactly what to fix. A file with several problems raises one :class:`SpecError`
whose ``errors`` holds them all (see :meth:`SpecError.collect`); the CLI prints one line each.
"""

from __future__ import annotations

from collections.abc import Sequence


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
        errors: Every problem found, when there are several (see :meth:`collect`).

    Attributes:
        errors: Every problem found in the file, this error first; ``(self,)`` for one.
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
        errors: Sequence[SpecError] = (),
    ) -> None:
        self.message = message
        self.file = file
        self.task = task
        self.field = field
        self.line = line
        self.errors: tuple[SpecError, ...] = tuple(errors) or (self,)
        super().__init__(message)

    @classmethod
    def collect(cls, errors: Sequence[SpecError]) -> SpecError:
        """Return one error to raise for ``errors`` (at least one), all of them kept.

        A single error is returned as it is, so its class (``CycleDetectedError``...) is
        what the caller catches; several become one ``cls`` carrying them in ``errors``,
        located and worded like the first.
        """
        flat = [one for error in errors for one in error.errors]
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        return cls(
            first.message,
            file=first.file,
            task=first.task,
            field=first.field,
            line=first.line,
            errors=flat,
        )

    @property
    def _more(self) -> str:
        return f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""

    def lines(self) -> list[str]:
        """Return one :meth:`one_line` per problem, as the CLI prints them."""
        return [error.one_line() for error in self.errors]

    def __str__(self) -> str:
        if len(self.errors) > 1:
            return f"{self.errors[0]}{self._more}"
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
        """Return ``file:line, task 'x', field 'y': ErrorName: message``.

        With several problems, the first one's line and ``(and N more)``.
        """
        if len(self.errors) > 1:
            return f"{self.errors[0].one_line()}{self._more}"
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


class EventError(SpecError):
    """Raised when an event trigger (``dagflow trigger``) has a bad name, id or data."""

    label = "event"


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


class BranchOutputError(WorkflowOutputError):
    """Raised when a branch task's output does not name its chosen children in ``branch``."""


class OutputTooLargeError(WorkflowOutputError):
    """Raised when an output's JSON is over ``DAGFLOW_OUTPUT_MAX``, or over
    ``DAGFLOW_OUTPUT_INLINE_MAX`` while no ``DAGFLOW_OUTPUT_STORE`` is set (no retry)."""


class OutputStoreError(RunnerError):
    """Raised when the output store (``DAGFLOW_OUTPUT_STORE``) cannot write or read an
    object; the message names the run, the task and the URL."""


class OutputMissingError(OutputStoreError):
    """Raised when the object a stored output refers to is gone (deleted, expired, another
    store): names the run, the task and the URL; another attempt cannot bring it back."""


class SecretError(RunnerError):
    """Raised when a ``{secret: NAME}`` param is malformed or its secret cannot be read on
    the worker; names the secret, never its value (no retry)."""


class TaskTimeoutError(RunnerError):
    """Raised inside a task's attempt when the workflow runs longer than its ``timeout_s``."""


class PlanVersionError(RunnerError):
    """Raised when a stored plan was written by a dagflow whose plan format this one cannot read."""


class RunExistsError(RunnerError):
    """Raised when a run is started with a fixed id that the run store already holds (a job's
    retry started twice)."""


class UnreachableError(DagflowError):
    """Raised when Redis or the broker cannot be reached: names the URL (password hidden)
    and the transport's own error, kept as ``__cause__``.

    Attributes:
        url: The URL that could not be reached (password hidden).
        cause: The transport's error message.
    """

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach {url}: {type(cause).__name__}: {cause}")
        self.url = url
        self.cause = str(cause)


class StoreUnavailable(UnreachableError):
    """Raised by dagflow's Redis clients (every store's) when Redis cannot be reached or does
    not answer in time: redis-py's ``ConnectionError`` or ``TimeoutError``, kept as
    ``__cause__``. Stores keep their transport to themselves: a caller that rides out an
    outage (a step, ``RunHandle.wait``) catches this, never a redis-py error."""


class ApiError(DagflowError):
    """Raised when the HTTP API refuses a request: carries the HTTP status, a stable ``code``
    and the request ``field`` at fault, which the API returns as its error body.

    Args:
        message: What is wrong, in one line.
        status: The HTTP status (a 4xx).
        code: A short machine-readable code (``unknown_dag``, ``run_not_found``...).
        field: The request field at fault (``dag``, ``params.day``, ``tenant``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "bad_request",
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


class AuthError(ApiError):
    """Raised when a request to the HTTP API has no bearer token, or one that is unknown or
    revoked (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401, code="unauthorized")
