"""What ships in ``dashboards/`` fits the exporter: the alert rules pass ``promtool check
rules`` and their unit tests (``promtool test rules``), and the Grafana dashboard and the
rules name only metrics that ``dagflow metrics`` exports (its catalog; the integration test
checks the catalog against the live endpoint)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow.metrics.catalog import BY_NAME, METRICS
from tests.support.prometheus import promtool_binary
from tests.support.services import require

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "dashboards" / "dagflow-alerts.yml"
GRAFANA = ROOT / "dashboards" / "dagflow-grafana.json"
ALERT_TESTS = ROOT / "tests" / "promtool" / "alerts_test.yml"
NAME = re.compile(r"\bdagflow_[a-z_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = promtool_binary()
    require(binary is not None, "promtool is not installed (apt-get install prometheus)")
    assert binary is not None
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def exported(name: str) -> bool:
    """True for a family of the catalog, or a histogram's _bucket/_sum/_count series."""
    if name in BY_NAME:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base in BY_NAME and BY_NAME[base].kind == "histogram"


def grafana_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str | dict):
                yield value if isinstance(value, str) else str(value.get("query", ""))
            else:
                yield from grafana_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from grafana_queries(item)


def test_promtool_checks_the_alert_rules() -> None:
    proc = promtool("check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    proc = promtool("test", "rules", str(ALERT_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_promtool_test() -> None:
    rules = set(re.findall(r"^\s+- alert: (\w+)", ALERTS.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert rules and rules == tested


@pytest.mark.parametrize("path", [ALERTS, GRAFANA], ids=lambda p: p.name)
def test_dashboards_name_only_exported_metrics(path: Path) -> None:
    text = path.read_text()
    names = set(NAME.findall(text))
    assert names, path
    assert sorted(n for n in names if not exported(n)) == []


def test_the_grafana_dashboard_is_valid_json_with_queries() -> None:
    board = json.loads(GRAFANA.read_text())
    queries = list(grafana_queries(board["panels"]))
    assert len(queries) >= len(board["panels"])
    assert all(NAME.search(q) for q in queries)
    # Every family that carries a rate or a level an operator watches has a panel
    used = {NAME.findall(q)[0] for q in queries}
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert sorted(m.name for m in METRICS if m.name not in used) == []
