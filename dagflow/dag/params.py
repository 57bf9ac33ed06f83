"""Run-level params: ``--param key=value`` parsing and the check against a DAG's ``params:``.

Pure. A DAG file may declare run-level params with their defaults in a top-level ``params:``
mapping; a run may override them (``dagflow run --param day=2026-01-05``, a schedule
entry's ``params:``, ``Runner.submit(params=...)``). A key the DAG does not declare is an
error naming the file and the key. Workflows read the result through
:attr:`dagflow.RunContext.params`; task ``params`` are not changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from dagflow.dag.budget import check_run_params
from dagflow.dag.spec import SAFE_LOADER
from dagflow.errors import DagValidationError

#: What YAML 1.1 reads as a base-60 number (``10:05`` is 605): a time of day, kept as text.
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")


def parse_param_args(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; each value is read as YAML (``3`` is an int, ``true`` a
    bool, ``x`` a str); a value YAML would read as a date or time stays the text given.

    Raises:
        ValueError: An item has no ``=``, has an empty key, or its value is not valid YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        if _SEXAGESIMAL.match(raw.strip()):
            out[key] = raw
            continue
        try:
            value = yaml.load(raw, Loader=SAFE_LOADER) if raw.strip() else ""
        except yaml.YAMLError:
            raise ValueError(f"{key}: {raw!r} is not valid YAML") from None
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            value = raw  # a date or a time YAML would parse: keep the text, as JSON can
        out[key] = value
    return out


def resolve_params(
    defaults: Mapping[str, Any], given: Mapping[str, Any] | None, source: str
) -> dict[str, Any]:
    """The run's params: the DAG's ``defaults`` with ``given`` over them.

    Raises:
        DagValidationError: ``given`` holds keys the DAG's ``params:`` does not declare
            (each names ``source`` and the key), or a malformed ``{secret: NAME}``.
    """
    given = dict(given or {})
    check_run_params(given, source)
    unknown = sorted(k for k in given if k not in defaults)
    if unknown:
        known = ", ".join(sorted(defaults)) or "none: the DAG has no params: block"
        problems = [
            DagValidationError(
                f"unknown run param (known: {known})", file=source, field=f"params.{k}"
            )
            for k in unknown
        ]
        raise DagValidationError.collect(problems)
    return {**dict(defaults), **given}
