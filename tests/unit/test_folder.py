"""What changed in a folder of YAML files: the one rescan the DAGs and schedules folders use."""

from __future__ import annotations

import os
from pathlib import Path

from dagflow.dag.folder import changes, scan


def test_a_scan_lists_only_the_suffixes_asked_for_by_name(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "c.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "d.yaml").mkdir()  # a folder is not a file
    assert list(scan(tmp_path, (".yaml", ".yml"))) == [tmp_path / "a.yml", tmp_path / "b.yaml"]


def test_added_changed_and_removed_files_are_told_apart(tmp_path: Path) -> None:
    keep, edit, drop = (tmp_path / f"{n}.yaml" for n in ("keep", "edit", "drop"))
    for path in (keep, edit, drop):
        path.write_text("v1")
    known = scan(tmp_path, (".yaml",))
    assert changes({}, known).changed == list(known.items())  # all new the first time
    # When one file is rewritten (same size, new mtime), one removed and one added
    edit.write_text("v2")
    os.utime(edit, ns=(known[edit][0] + 1_000_000, known[edit][0] + 1_000_000))
    drop.unlink()
    (tmp_path / "new.yaml").write_text("v1")
    diff = changes(known, scan(tmp_path, (".yaml",)))
    # Then only those are read again or forgotten
    assert diff.gone == [drop]
    assert [path for path, _ in diff.changed] == [edit, tmp_path / "new.yaml"]
    assert changes(known, known).changed == [] and changes(known, known).gone == []
