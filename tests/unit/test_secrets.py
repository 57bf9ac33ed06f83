"""Secret references (pure), the providers, the redactor and the settings that choose them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagflow.dag.budget import PARAMS_MAX_BYTES, check_params_size, params_warning
from dagflow.dag.params import resolve_params
from dagflow.dag.secret_refs import bad_refs, is_secret_ref, names, secret_refs, substitute
from dagflow.dag.spec import parse_dag
from dagflow.errors import ConfigError, DagValidationError, SecretError
from dagflow.execution.secrets import (
    MASK,
    EnvSecrets,
    FileSecrets,
    Redactor,
    provider,
    resolve_attempt,
)
from dagflow.settings import Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"secret": "A"}, True),
        ({"secret": "A", "other": 1}, False),
        ({"Secret": "A"}, False),
        ("secret", False),
        ([{"secret": "A"}], False),
    ],
)
def test_what_is_a_secret_ref(value: object, expected: bool) -> None:
    assert is_secret_ref(value) is expected


def test_refs_are_found_at_any_depth_and_substituted() -> None:
    params = {"db": {"user": "u", "password": {"secret": "DB_PW"}}, "keys": [{"secret": "K"}, 1]}
    assert list(secret_refs(params)) == [("db.password", "DB_PW"), ("keys[0]", "K")]
    assert names({"a": {"secret": "X"}, "b": {"secret": "X"}}) == ["X"]
    out = substitute(params, lambda n: n.lower())
    assert out == {"db": {"user": "u", "password": "db_pw"}, "keys": ["k", 1]}
    plain = {"a": [1, 2]}
    assert substitute(plain, str.lower) is plain  # nothing to replace: not copied


@pytest.mark.parametrize("name", ["../x", "a/b", "", "1ABC", "a b", 3, "x" * 129])
def test_bad_secret_names(name: object) -> None:
    assert [path for path, _ in bad_refs({"p": {"secret": name}})] == ["p"]


def test_a_bad_run_level_secret_is_a_validation_error_naming_the_key() -> None:
    with pytest.raises(DagValidationError, match=r"field 'params\.token'"):
        resolve_params({"token": None}, {"token": {"secret": "a/b"}}, "d.yaml")


def test_env_and_file_providers(tmp_path: Path) -> None:
    env = EnvSecrets({"A": "1"})
    assert env.get("A") == "1" and env.get("B") is None
    assert env.where("B") == "environment variable B"
    (tmp_path / "PW").write_text("s3cret\n")
    files = FileSecrets(tmp_path)
    assert files.get("PW") == "s3cret" and files.get("NONE") is None
    assert isinstance(provider("env"), EnvSecrets)
    chosen = provider(tmp_path.as_uri())
    assert isinstance(chosen, FileSecrets) and chosen.folder == tmp_path
    with pytest.raises(ConfigError):
        provider("vault://x")


def test_resolving_an_attempt() -> None:
    source = EnvSecrets({"PW": "hunter2-long", "TOK": "tok-123"})
    found = resolve_attempt(source, {"pw": {"secret": "PW"}, "n": 1}, {"t": {"secret": "TOK"}})
    assert found.task_params == {"pw": "hunter2-long", "n": 1}
    assert found.run_params == {"t": "tok-123"}
    assert found.redactor.redact("x hunter2-long y tok-123") == f"x {MASK} y {MASK}"
    none = resolve_attempt(source, {"n": 1}, {})
    assert not none.redactor and none.task_params == {"n": 1}
    with pytest.raises(SecretError) as err:
        resolve_attempt(source, {"pw": {"secret": "MISSING"}}, {})
    assert err.value.one_line() == (
        "SecretError: secret 'MISSING' is not set (environment variable MISSING not found)"
    )


def test_the_redactor_masks_json_escaped_forms_and_skips_short_values() -> None:
    redactor = Redactor.of(['a"b\\c-é', "abc"])
    assert redactor.redact('{"v":"a\\"b\\\\c-\\u00e9"}') == '{"v":"***"}'
    assert redactor.redact('a"b\\c-é') == "***"
    assert redactor.redact("abc") == "abc"  # shorter than REDACT_MIN: left alone


def test_settings_of_outputs_and_secrets() -> None:
    s = Settings.from_env({})
    assert (s.output_store, s.output_inline_max, s.output_max, s.secrets) == (
        None, 65536, 268435456, "env",
    )  # fmt: skip
    assert s.output_store_url is not None and s.output_store_url.endswith("/logs/outputs")
    broker = Settings.from_env({"DAGFLOW_BROKER_URL": "redis://h:1/0"})
    assert broker.output_store_url is None  # no default with a broker
    s = Settings.from_env(
        {"DAGFLOW_OUTPUT_STORE": "s3://b/p/", "DAGFLOW_SECRETS": "file:///run/secrets"}
    )
    assert s.output_store == "s3://b/p" and s.secrets == "file:///run/secrets"
    assert Settings.from_env({"DAGFLOW_OUTPUT_STORE": "/srv/o"}).output_store == "file:///srv/o"
    for env in (
        {"DAGFLOW_OUTPUT_STORE": "bucket"},
        {"DAGFLOW_SECRETS": "vault"},
        {"DAGFLOW_OUTPUT_INLINE_MAX": "x"},
        {"DAGFLOW_OUTPUT_MAX": "-1"},
    ):
        with pytest.raises(ConfigError, match=next(iter(env))):
            Settings.from_env(env)


def test_the_params_budget() -> None:
    def dag(blob: str) -> object:
        return parse_dag(
            {"name": "d", "tenant_id": "t", "tasks": [{"id": "a", "workflow_ref": "w",
                                                       "params": {"b": blob}}]},
            source="d.yaml",
        )  # fmt: skip

    small, large = dag("x"), dag("x" * 70_000)
    assert params_warning(small) is None  # type: ignore[arg-type]
    warning = params_warning(large)  # type: ignore[arg-type]
    assert warning is not None and "task 'a'" in warning
    check_params_size(large, {}, "d.yaml")  # type: ignore[arg-type]
    with pytest.raises(DagValidationError, match=f"over {PARAMS_MAX_BYTES}"):
        check_params_size(small, {"p": "x" * PARAMS_MAX_BYTES}, "d.yaml")  # type: ignore[arg-type]
