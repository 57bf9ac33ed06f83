"""Run-level params: ``--param key=value`` read as YAML, and the check against ``params:``."""

from __future__ import annotations

from typing import Any

import pytest

from dagflow.dag.params import parse_param_args, resolve_params
from dagflow.errors import DagValidationError, SpecError


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("limit=10", 10),
        ("ratio=1.5", 1.5),
        ("dry=true", True),
        ("dry=false", False),
        ("name=acme", "acme"),
        ("day=null", None),
        ("ids=[1, 2]", [1, 2]),
        ("opts={a: 1}", {"a": 1}),
        ("quoted='10'", "10"),
        # a value YAML would read as a date or a timestamp stays the text given
        ("day=2026-01-05", "2026-01-05"),
        ("at=2026-01-05T10:00:00Z", "2026-01-05T10:00:00Z"),
        # a value JSON cannot hold stays the text too
        ("n=.nan", ".nan"),
        ("n=.inf", ".inf"),
        # only the first "=" splits, and the key is stripped
        ("expr=a=b", "a=b"),
        (" key =1", 1),
        # an empty or blank value is the empty string, not YAML's null
        ("empty=", ""),
        ("blank=   ", ""),
    ],
)
def test_each_value_is_read_as_yaml(item: str, expected: Any) -> None:
    key = item.partition("=")[0].strip()
    assert parse_param_args([item]) == {key: expected}


def test_a_time_of_day_stays_the_text_given() -> None:
    assert parse_param_args(["at=10:05"]) == {"at": "10:05"}


def test_several_items_and_a_repeated_key_the_last_wins() -> None:
    assert parse_param_args(["day=2026-01-05", "limit=3", "limit=4"]) == {
        "day": "2026-01-05",
        "limit": 4,
    }
    assert parse_param_args([]) == {}


@pytest.mark.parametrize("item", ["limit", "=3", "  =3", ""])
def test_an_item_without_a_key_and_an_equals_sign_is_refused(item: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_param_args(["ok=1", item])
    assert str(caught.value) == f"expected key=value, got {item!r}"


@pytest.mark.parametrize("raw", ["[1", "a: b: c", "{x"])
def test_a_value_that_is_not_yaml_is_refused_naming_the_key(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_param_args([f"ids={raw}"])
    assert str(caught.value) == f"ids: {raw!r} is not valid YAML"
    assert caught.value.__cause__ is None  # a one-line error, not the parser's traceback


def test_given_params_go_over_the_defaults() -> None:
    defaults = {"day": None, "limit": 10}
    assert resolve_params(defaults, {"day": "2026-01-05"}, "daily.yaml") == {
        "day": "2026-01-05",
        "limit": 10,
    }
    assert defaults == {"day": None, "limit": 10}  # the DAG's defaults are not changed


@pytest.mark.parametrize("given", [None, {}])
def test_no_params_given_is_the_defaults(given: dict[str, Any] | None) -> None:
    assert resolve_params({"limit": 10}, given, "daily.yaml") == {"limit": 10}


def test_an_unknown_key_names_the_file_the_key_and_the_known_ones() -> None:
    with pytest.raises(DagValidationError) as caught:
        resolve_params({"limit": 10, "day": None}, {"nope": 1}, "dags/daily.yaml")
    error = caught.value
    assert (error.file, error.field) == ("dags/daily.yaml", "params.nope")
    assert error.message == "unknown run param (known: day, limit)"
    assert error.one_line() == (
        "dags/daily.yaml, field 'params.nope': DagValidationError: "
        "unknown run param (known: day, limit)"
    )


def test_a_dag_without_params_says_so() -> None:
    with pytest.raises(DagValidationError) as caught:
        resolve_params({}, {"day": "x"}, "a.yaml")
    assert caught.value.message == "unknown run param (known: none: the DAG has no params: block)"


def test_every_unknown_key_is_reported_at_once_in_key_order() -> None:
    # Given two unknown keys, given out of order
    with pytest.raises(DagValidationError) as caught:
        resolve_params({"day": None}, {"zeta": 1, "alpha": 2, "day": "x"}, "a.yaml")
    # Then one error carries both, sorted, and says there is more than one
    error = caught.value
    assert [e.field for e in error.errors] == ["params.alpha", "params.zeta"]
    assert error.one_line().endswith("(and 1 more)")
    assert isinstance(error, SpecError)  # the CLI's exit 2
