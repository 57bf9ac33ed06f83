"""Resolving ``{secret: NAME}`` params on the worker, and redacting what an attempt stores.

A secret is read when an attempt starts, by the worker that runs it, just before the
workflow is called (:func:`resolve_attempt`); its value lives in that call's params and run
context and nowhere else. The plan, the run's meta, events, ``dagflow status`` and the
dashboard hold the reference (``{"secret": "NAME"}``).

What the attempt stores afterwards is **redacted**, best effort: every occurrence of a
resolved value (as text and as JSON-escaped text) in the output JSON, the error line and the
traceback is replaced by ``***`` before it is written (:class:`Redactor`). A value shorter
than :data:`REDACT_MIN` characters is not searched for (it would mangle unrelated text); a
workflow that transforms a secret (base64, a hash, a substring) and returns or raises the
result is not caught. Secrets a workflow logs itself are its own business.

Providers (``DAGFLOW_SECRETS``), each a :class:`SecretProvider`:

* ``env`` (default): the worker's environment variable ``NAME``;
* ``file:///run/secrets``: the file ``/run/secrets/NAME`` (Docker and Kubernetes secrets),
  its one trailing newline removed.

A vault is one more class with ``get`` and ``where``, chosen in :func:`provider`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from dagflow.dag.secret_refs import names, substitute, valid_name
from dagflow.errors import ConfigError, SecretError

#: Shortest secret value the redactor searches for, in characters.
REDACT_MIN = 4
#: What a redacted value is replaced with.
MASK = "***"


class SecretProvider(Protocol):
    """Where secrets are read (``DAGFLOW_SECRETS``)."""

    def get(self, name: str) -> str | None:
        """The secret's value, or None if this provider has no such secret."""

    def where(self, name: str) -> str:
        """Where ``name`` was looked for, for the error line (never a value)."""


class EnvSecrets:
    """Secrets from the worker's environment (``DAGFLOW_SECRETS=env``).

    Args:
        env: The environment (``os.environ`` by default).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env

    def get(self, name: str) -> str | None:
        """``$NAME``, or None."""
        return self.env.get(name)

    def where(self, name: str) -> str:
        """``environment variable NAME``."""
        return f"environment variable {name}"


class FileSecrets:
    """Secrets as files of one folder (``DAGFLOW_SECRETS=file:///run/secrets``).

    Args:
        folder: The folder; ``NAME`` is the file ``folder/NAME``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, name: str) -> str | None:
        """The file's text without its one trailing newline, or None if there is no file."""
        try:
            text = (self.folder / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretError(
                f"secret '{name}': cannot read {self.where(name)}: {exc.strerror}"
            ) from None
        return text[:-1] if text.endswith("\n") else text

    def where(self, name: str) -> str:
        """``file /run/secrets/NAME``."""
        return f"file {self.folder / name}"


def provider(setting: str) -> SecretProvider:
    """The provider ``DAGFLOW_SECRETS`` names (``env`` or ``file:///folder``).

    Raises:
        ConfigError: Any other value.
    """
    if setting == "env":
        return EnvSecrets()
    parsed = urlparse(setting)
    if parsed.scheme == "file" and parsed.path:
        return FileSecrets(Path(unquote(parsed.path)))
    raise ConfigError(f"DAGFLOW_SECRETS={setting!r} must be 'env' or file:///a/folder")


@dataclass(frozen=True)
class Redactor:
    """Replaces resolved secret values by ``***`` in text an attempt stores.

    Attributes:
        values: The values resolved for the attempt.
    """

    values: tuple[str, ...] = ()
    _needles: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, values: list[str]) -> Redactor:
        """A redactor for ``values`` (each as text and as it appears inside a JSON string)."""
        needles: set[str] = set()
        for value in values:
            if len(value) >= REDACT_MIN:
                needles.add(value)
                needles.add(json.dumps(value)[1:-1])
                needles.add(json.dumps(value, ensure_ascii=False)[1:-1])
        # Longest first, so a value that contains another is masked whole.
        return cls(tuple(values), tuple(sorted(needles, key=len, reverse=True)))

    def __bool__(self) -> bool:
        return bool(self._needles)

    def redact(self, text: str) -> str:
        """``text`` with every resolved value replaced by ``***``."""
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, MASK)
        return text

    def redact_opt(self, text: str | None) -> str | None:
        """:meth:`redact`, passing None through."""
        return None if text is None else self.redact(text)


#: The redactor of an attempt without secrets.
NO_SECRETS = Redactor()


@dataclass(frozen=True)
class Resolved:
    """An attempt's params with their secrets in, and the redactor for what it stores."""

    task_params: Mapping[str, Any]
    run_params: Mapping[str, Any]
    redactor: Redactor


def resolve_attempt(
    source: SecretProvider, task_params: Mapping[str, Any], run_params: Mapping[str, Any]
) -> Resolved:
    """Read every secret the task's and the run's params refer to.

    Raises:
        SecretError: A name is not valid, or the provider has no such secret (one line
            naming the secret and where it was looked for, never a value).
    """
    wanted = names(task_params) + [n for n in names(run_params) if n not in names(task_params)]
    if not wanted:
        return Resolved(task_params, run_params, NO_SECRETS)
    values: dict[str, str] = {}
    for name in wanted:
        if not valid_name(name):
            raise SecretError(f"{{secret: {name!r}}} is not a valid secret name")
        value = source.get(name)
        if value is None:
            raise SecretError(f"secret '{name}' is not set ({source.where(name)} not found)")
        values[name] = value
    resolve = values.__getitem__
    return Resolved(
        substitute(dict(task_params), resolve),
        substitute(dict(run_params), resolve),
        Redactor.of(list(values.values())),
    )
