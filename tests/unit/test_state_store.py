"""The seed's module-level state-store API (documented in the README) keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagflow.events import state_store


def test_module_level_api_reads_and_writes_state_store_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given STATE_STORE_PATH pointing at an empty file
    path = tmp_path / "state.jsonl"
    monkeypatch.setenv("STATE_STORE_PATH", str(path))
    # When events are recorded through the seed's functions
    first = state_store.record_event(
        {"event": "run_finished", "status": "success", "schedule_id": "a"}
    )
    state_store.record_event({"event": "run_started", "schedule_id": "b"})
    state_store.record_event({"event": "run_finished", "status": "failed", "schedule_id": "a"})
    # Then they are appended with a timestamp, and read back oldest first
    assert first["timestamp"].endswith("Z") and path.read_text().count("\n") == 3
    assert [e["event"] for e in state_store.last_runs(limit=2)] == ["run_started", "run_finished"]
    grouped = state_store.index_by("schedule_id")
    assert [e.get("status") for e in grouped["a"]] == ["success", "failed"]
    assert list(grouped) == ["a", "b"]
