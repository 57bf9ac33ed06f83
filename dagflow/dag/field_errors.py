"""Pydantic's field errors in the README's words: what was expected, what was found.

Pure: takes a :class:`pydantic.ValidationError` and a table of the file format's fields,
returns ``(location, message)`` pairs. :mod:`dagflow.dag.spec` and
:mod:`dagflow.scheduling.schedules` turn them into
:class:`~dagflow.errors.SpecError` lines naming the file, the task or schedule and the field.

The table is keyed by the field names the README uses: ``tasks[].retries`` is the ``retries``
field of any task, ``tasks[].depends_on[]`` any item of a task's ``depends_on``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

#: Longest piece of a bad value quoted back in a message, in characters.
QUOTE_MAX = 40

Loc = tuple[int | str, ...]

#: Pydantic error types that mean "wrong type or out of bounds": answered with the table.
_EXPECTATION_TYPES = frozenset(
    {
        "string_type",
        "string_too_short",
        "string_too_long",
        "int_type",
        "float_type",
        "bool_type",
        "dict_type",
        "list_type",
        "tuple_type",
        "model_type",
        "model_attributes_type",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
    }
)


def field_path(loc: Loc) -> str:
    """The README name of the field at ``loc``: ``("tasks", 2, "id")`` -> ``tasks[].id``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += "[]"
        else:
            path += f".{part}" if path else part
    return path


def describe(value: Any) -> str:
    """Say what ``value`` is in YAML terms: ``the string 'x'``, ``a list``, ``nothing``."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        quoted = value if len(value) <= QUOTE_MAX else value[: QUOTE_MAX - 3] + "..."
        return f"the string {quoted!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _siblings(path: str, fields: Mapping[str, str]) -> list[str]:
    """The field names allowed next to the field at README path ``path``."""
    parent, _, _ = path.rpartition(".")
    prefix = f"{parent}." if parent else ""
    names = []
    for key in fields:
        if key.startswith(prefix):
            rest = key.removeprefix(prefix)
            if rest and "." not in rest and "[" not in rest:
                names.append(rest)
    return names


def _expectation(error: Mapping[str, Any], fields: Mapping[str, str]) -> str | None:
    expected = fields.get(field_path(tuple(error["loc"])))
    if expected is None:
        return None
    value = error.get("input")
    message = f"expected {expected}, got {describe(value)}"
    if expected.startswith("a list") and isinstance(value, str) and value:
        message += f" (write [{value}])"
    return message


def _message(error: Mapping[str, Any], fields: Mapping[str, str]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind in _EXPECTATION_TYPES:
        expectation = _expectation(error, fields)
        if expectation is not None:
            return expectation
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Exception):
        return str(cause)
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def field_errors(exc: ValidationError, fields: Mapping[str, str]) -> list[tuple[Loc, str]]:
    """Every error of ``exc`` as ``(location, message)``, in the words of ``fields``.

    An unknown key close to an allowed one says ``did you mean``; when that allowed key is a
    required field reported missing at the same place, the two are one mistake and only the
    unknown key is reported.

    Args:
        exc: What pydantic raised.
        fields: README field name -> what it expects (``"an integer between 0 and 100"``),
            for every field of the format: unknown-key suggestions are drawn from it.

    Returns:
        One ``(loc, message)`` per problem, in pydantic's order.
    """
    errors = exc.errors()
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    folded: set[Loc] = set()
    found: list[tuple[Loc, str]] = []
    for error in errors:
        loc: Loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            name = str(loc[-1]) if loc else ""
            close = difflib.get_close_matches(name, _siblings(field_path(loc), fields), n=1)
            if close:
                message += f" (did you mean '{close[0]}'?)"
                folded.add((*loc[:-1], close[0]))
            found.append((loc, message))
        else:
            found.append((loc, _message(error, fields)))
    return [(loc, msg) for loc, msg in found if not (loc in missing and loc in folded)]
