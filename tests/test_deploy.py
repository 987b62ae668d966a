"""The monitoring shipped in ``deploy/``: Prometheus' rules and their unit tests, and the
Grafana dashboard.

promtool (in Debian's ``prometheus``, which ``scripts/test`` installs when run as root)
checks the rules and the dashboard's queries and runs the rules' unit tests; without it
that part is skipped locally and fails in CI. The rest reads the files: every alert is
complete, every invariant has its alert, and every metric a query names is one that a
real creditsd's ``/metrics`` shows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from creditsd.inprocess import Ledger
from creditsd.integrity import INVARIANTS
from creditsd.worker import reconcile_once
from tests.conftest import client_for, create_key, unavailable

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "creditsd-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "creditsd-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "creditsd-dashboard.json"

SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
# Grafana's variables, as Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$job": "creditsd"}

_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_INVARIANT_MATCHER = re.compile(r'invariant="(\w+)"')
_DURATION = re.compile(r"[0-9]+[smhd]")


def metric_names(expr: str) -> set[str]:
    """The creditsd metrics a PromQL expression reads (label values left out):
    ``max(creditsd_holds_overdue{job="creditsd_x"})`` → ``{"creditsd_holds_overdue"}``."""
    return {name for name in _NAME.findall(_QUOTED.sub("", expr)) if name.startswith("creditsd_")}


def exported_names(exposition: str) -> set[str]:
    """The series names a scrape can show: a counter's ``_total``, a histogram's
    ``_bucket``, ``_count`` and ``_sum``, a gauge's own name (children or not yet); not the
    client library's ``_created`` timestamps."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if family.name.endswith("_created"):
            continue
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of the rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rule_expressions() -> list[str]:
    """Every rule's expression, recording rules' too."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard, parsed."""
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def dashboard_panels() -> list[dict[str, Any]]:
    """The dashboard's panels that draw something (rows left out)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def panel_expressions() -> list[str]:
    """The PromQL of every panel of the dashboard."""
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def dashboard_expressions() -> list[str]:
    """Every query of the dashboard: its panels' and its variables'."""
    variables = [
        variable["query"]["query"]
        for variable in dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]
    return panel_expressions() + variables


def filled_in(expr: str) -> str:
    """A panel's query as Grafana sends it, its variables replaced by values."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def camel(snake: str) -> str:
    """``hold_past_expiry`` → ``HoldPastExpiry``."""
    return "".join(word.capitalize() for word in snake.split("_"))


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus' promtool."""
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    return found


@pytest.fixture
async def exported(ledger: Ledger) -> set[str]:
    """The metric names a real creditsd's /metrics shows once reconciliation has run."""
    assert await reconcile_once(ledger) is not None
    async with client_for(ledger, await create_key(ledger, "read", "prometheus")) as api:
        scraped = await api.get("/metrics")
    assert scraped.status_code == 200
    return exported_names(scraped.text)


def test_every_alert_says_how_severe_since_when_and_what_to_do() -> None:
    found = alerts()
    names = [alert["alert"] for alert in found]
    assert len(names) == len(set(names)), "two alerts share a name"
    for alert in found:
        assert alert["alert"].startswith("Creditsd"), alert["alert"]
        assert alert["expr"].strip(), alert["alert"]
        assert _DURATION.fullmatch(alert["for"]), alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert set(alert["annotations"]) == ANNOTATIONS, alert["alert"]
        assert all(text.strip() for text in alert["annotations"].values()), alert["alert"]
        assert alert["annotations"]["runbook_url"] == "README.md#monitoring", alert["alert"]


def test_every_invariant_has_its_own_alert() -> None:
    by_invariant = {
        matched: alert["alert"]
        for alert in alerts()
        for matched in _INVARIANT_MATCHER.findall(alert["expr"])
    }
    assert by_invariant == {
        invariant: f"CreditsdInvariant{camel(invariant)}" for invariant in INVARIANTS
    }


def test_the_readme_explains_every_alert() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    assert "### Monitoring" in readme
    monitoring = readme.split("### Monitoring", 1)[1].split("\n## ", 1)[0]
    missing = [alert["alert"] for alert in alerts() if f"`{alert['alert']}`" not in monitoring]
    assert missing == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_rules_and_dashboard_read_only_metrics_creditsd_exports(
    exported: set[str],
) -> None:
    read_by_rules = set().union(*map(metric_names, rule_expressions()))
    read_by_dashboard = set().union(*map(metric_names, dashboard_expressions()))
    assert read_by_rules - exported == set()
    assert read_by_dashboard - exported == set()
    # …and the dashboard draws every one of them (a histogram by any of its series).
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in exported}
    drawn = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in read_by_dashboard}
    assert {family for family in families if family.startswith("creditsd_")} - drawn == set()


def test_the_dashboard_is_one_grafana_imports() -> None:
    board = dashboard()
    assert board["uid"] == "creditsd"
    assert board["title"] == "creditsd"
    assert isinstance(board["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "two panels share an id"
    for panel in dashboard_panels():
        assert panel["title"], panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert 'job="$job"' in target["expr"], (panel["title"], target["expr"])


def test_promtool_finds_the_rules_and_the_dashboards_queries_valid(
    promtool: str, tmp_path: Path
) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The panels' queries, as recording rules.
    queries = [
        {"record": f"dashboard:query_{number}", "expr": filled_in(expr)}
        for number, expr in enumerate(panel_expressions())
    ]
    as_rules = tmp_path / "dashboard-rules.yml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": queries}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(as_rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_make_every_alert_fire(promtool: str) -> None:
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {alert["alert"] for alert in alerts()} - fired == set()
