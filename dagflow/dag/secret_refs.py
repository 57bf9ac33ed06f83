"""Secret params: ``{secret: NAME}`` in place of a value (pure).

A param value (a task's ``params``, the DAG's ``params:`` block, ``--param
key='{secret: NAME}'``) that is a mapping with the single key ``secret`` and a name for
value is a **reference** to a secret: the plan, the run's meta, ``dag_start`` and every other
record hold the reference, and only the worker that runs an attempt replaces it by the value
(:mod:`dagflow.execution.secrets`), just before it calls the workflow. References may sit at
any depth (``{db: {password: {secret: DB_PASSWORD}}}``).

A name is 1-128 letters, digits, ``_``, ``-`` or ``.``, starting with a letter or ``_``:
it is an environment variable or a file name, never a path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: The key of a secret reference.
SECRET_KEY = "secret"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def is_secret_ref(value: Any) -> bool:
    """True for ``{"secret": ...}``: a mapping whose only key is ``secret``."""
    return isinstance(value, Mapping) and len(value) == 1 and SECRET_KEY in value


def valid_name(name: Any) -> bool:
    """True when ``name`` may name a secret (see the module docstring)."""
    return isinstance(name, str) and bool(_NAME.match(name))


def secret_refs(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every reference in ``value``: ``(path, name)``, the path in ``a.b[2]`` form."""
    if is_secret_ref(value):
        yield path, value[SECRET_KEY]
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from secret_refs(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from secret_refs(item, f"{path}[{i}]")


def bad_refs(value: Any) -> list[tuple[str, str]]:
    """``(path, why)`` for each reference whose name is not valid."""
    return [
        (path, f"{{secret: {name!r}}}: a secret name is 1-128 letters, digits, _ - . "
         "starting with a letter or _")
        for path, name in secret_refs(value)
        if not valid_name(name)
    ]  # fmt: skip


def substitute(value: Any, resolve: Callable[[str], str]) -> Any:
    """``value`` with every reference replaced by ``resolve(name)``; a value without one is
    returned as it is (not copied)."""
    if is_secret_ref(value):
        return resolve(str(value[SECRET_KEY]))
    if isinstance(value, Mapping):
        if not any(True for _ in secret_refs(value)):
            return value
        return {k: substitute(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        if not any(True for _ in secret_refs(value)):
            return value
        return [substitute(v, resolve) for v in value]
    return value


def names(value: Any) -> list[str]:
    """The distinct secret names ``value`` refers to, in order of appearance."""
    seen: list[str] = []
    for _, name in secret_refs(value):
        if str(name) not in seen:
            seen.append(str(name))
    return seen
