"""The pure parts of event triggers: the ``triggers`` field, the DAG catalog, event checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagflow.client.triggers import check_event
from dagflow.dag.catalog import dags_in
from dagflow.dag.spec import parse_dag
from dagflow.errors import DagValidationError, EventError
from dagflow.settings import Settings

BASE = {"name": "n", "tenant_id": "t", "tasks": [{"id": "a", "workflow_ref": "x"}]}


def test_triggers_default_to_none_and_list_events_in_file_order() -> None:
    assert parse_dag(BASE).events == ()
    spec = parse_dag({**BASE, "triggers": [{"event": "orders.loaded"}, {"event": "b:c-1"}]})
    assert spec.events == ("orders.loaded", "b:c-1")


@pytest.mark.parametrize(
    ("triggers", "line"),
    [
        (
            [{"event": "-x"}],
            "d.yaml, field 'triggers.0.event': DagValidationError: expected an event name",
        ),
        (
            [{"evnt": "x"}],
            "d.yaml, field 'triggers.0.evnt': DagValidationError: unknown key (did you mean "
            "'event'?)",
        ),
        (
            ["orders.loaded"],
            "d.yaml, field 'triggers.0': DagValidationError: expected a trigger (a mapping "
            "with event), got the string 'orders.loaded'",
        ),
        (
            [{"event": "a"}, {"event": "a"}],
            "d.yaml, field 'triggers': DagValidationError: event 'a' is listed twice",
        ),
        (
            {"event": "a"},
            "d.yaml, field 'triggers': DagValidationError: expected a list of triggers",
        ),
    ],
)
def test_bad_triggers_are_one_line_naming_file_and_field(triggers: object, line: str) -> None:
    with pytest.raises(DagValidationError) as caught:
        parse_dag({**BASE, "triggers": triggers}, source="d.yaml")
    assert caught.value.one_line().startswith(line)


def write(folder: Path, file: str, name: str, tenant: str, events: list[str]) -> None:
    triggers = ", ".join(f"{{event: {e}}}" for e in events)
    (folder / file).write_text(
        f"name: {name}\ntenant_id: {tenant}\ntriggers: [{triggers}]\n"
        "tasks:\n  - {id: a, workflow_ref: inbox_drive_sweep}\n"
    )


def test_catalog_finds_dags_by_event_and_tenant_and_keeps_bad_files_apart(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.yaml", "a", "acme", ["e1"])
    write(tmp_path, "b.yml", "b", "beta", ["e1", "e2"])
    write(tmp_path, "c.yaml", "c", "acme", [])
    (tmp_path / "bad.yaml").write_text("name: bad\n")
    (tmp_path / "notes.txt").write_text("not a DAG")
    catalog = dags_in(tmp_path, Settings())
    assert [d.name for d in catalog.dags()] == ["a", "b", "c"]
    assert [d.name for d in catalog.triggered_by("e1")] == ["a", "b"]
    assert [d.name for d in catalog.triggered_by("e1", tenant="beta")] == ["b"]
    assert catalog.triggered_by("e3") == []
    assert len(catalog.errors) == 1 and catalog.errors[0].file == str(tmp_path / "bad.yaml")
    by_name = catalog.by_name("c")
    assert by_name is not None and by_name.spec.tenant_id == "acme"
    assert catalog.by_name("zzz") is None


def test_catalog_refuses_an_ambiguous_name_and_a_missing_folder(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "same", "acme", [])
    write(tmp_path, "b.yaml", "same", "beta", [])
    with pytest.raises(DagValidationError, match="declared by more than one file"):
        dags_in(tmp_path, Settings()).by_name("same")
    with pytest.raises(DagValidationError, match="DAG folder not found"):
        dags_in(tmp_path / "nope", Settings())


def test_dags_dir_setting_defaults_to_dags() -> None:
    assert Settings.from_env({}).dags_dir == Path("dags")
    assert Settings.from_env({"DAGFLOW_DAGS_DIR": "/srv/dags"}).dags_dir == Path("/srv/dags")


@pytest.mark.parametrize(
    ("name", "event_id", "data", "field"),
    [
        ("bad name", "1", {}, "name"),
        ("e", "", {}, "id"),
        ("e", "x" * 257, {}, "id"),
        ("e", "1", [1], "data"),
        ("e", "1", "text", "data"),
    ],
)
def test_check_event_names_the_bad_field(
    name: str, event_id: str, data: object, field: str
) -> None:
    with pytest.raises(EventError) as caught:
        check_event(name, event_id, data)
    assert caught.value.field == field


def test_check_event_accepts_no_data() -> None:
    assert check_event("e", "1", None) == {}
    assert check_event("e", "1", {"k": 1}) == {"k": 1}
