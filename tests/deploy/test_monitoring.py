"""``deploy/monitoring/``: the Prometheus config, the alerting rules (unit-tested with ``promtool
test rules``) and the Grafana dashboard, checked against the metrics the code really exports.

``promtool`` comes with Debian's ``prometheus`` package (``.ci/run`` installs it); without it these
tests fail under ``CI=true`` and are skipped elsewhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from taskhub.config import Settings
from taskhub.core.metrics import metrics
from taskhub.ops import metrics as ops_metrics
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
PROMETHEUS = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana" / "taskhub-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

#: The seed's thresholds and the issue's alerts: alert name -> a fragment its expression must hold.
REQUIRED_ALERTS = {
    "TaskhubInstanceDown": "up{",
    "TaskhubHighCpu": "> 0.8",
    "TaskhubHighMemory": "> 0.85",
    "TaskhubHighErrorRate": "> 0.01",
    "TaskhubHighLatencyP95": "> 0.05",
    "TaskhubOutboxBacklog": "taskhub_outbox_oldest_unsent_age_seconds",
    "TaskhubDeadLetters": "taskhub_dlq_messages",
}
_NAME = re.compile(r"\b(taskhub_[a-z0-9_]+)\b")
# Grafana's variables, replaced by what they stand for so that promtool can parse the expression.
_GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$api_job": "taskhub-api",
    "$worker_job": "taskhub-worker",
    "$instance": ".*",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    return path


def run_promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def exported_names() -> set[str]:
    """Every sample name a Taskhub process can expose (from the metric objects themselves)."""
    names = {ops_metrics.OUTBOX_UNSENT, ops_metrics.OUTBOX_OLDEST_AGE, ops_metrics.OUTBOX_SCRAPE_ERROR}
    for value in vars(metrics()).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            names.update(family.name + suffix for suffix in suffixes)
    return names


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


class TestPrometheusConfig:
    def test_promtool_accepts_config_and_rules(self) -> None:
        result = run_promtool("check", "config", "prometheus.yml")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS: 7 rules found" in result.stdout

    def test_scrapes_api_instances_and_the_worker_with_its_rules(self) -> None:
        config = yaml.safe_load(PROMETHEUS.read_text())
        assert config["rule_files"] == ["alerts.yml"]
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        assert set(jobs) == {"taskhub-api", "taskhub-worker", "prometheus"}
        assert jobs["taskhub-api"]["metrics_path"] == "/metrics"
        [workers] = [s["targets"] for s in jobs["taskhub-worker"]["static_configs"]]
        assert workers == [f"worker:{Settings.model_fields['metrics_port'].default}"]


class TestAlertRules:
    def test_unit_tests_pass(self) -> None:
        result = run_promtool("test", "rules", ALERT_TESTS.name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_the_required_alerts_with_the_seed_thresholds(self) -> None:
        rules = {rule["alert"]: rule for rule in alert_rules()}
        assert set(rules) == set(REQUIRED_ALERTS)
        for name, fragment in REQUIRED_ALERTS.items():
            assert fragment in rules[name]["expr"], name
            assert rules[name]["labels"]["severity"] in {"warning", "critical"}
            assert rules[name]["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"

    def test_every_alert_is_tested_firing_and_quiet(self) -> None:
        cases: dict[str, set[bool]] = {}
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
        assert cases == {name: {True, False} for name in REQUIRED_ALERTS}

    def test_every_runbook_anchor_is_a_heading_in_operations_md(self) -> None:
        headings = {
            line.lstrip("#").strip().lower() for line in OPERATIONS.read_text().splitlines() if line.startswith("#")
        }
        for name in REQUIRED_ALERTS:
            assert name.lower() in headings, f"docs/operations.md has no heading for {name}"

    def test_alerts_use_only_metrics_the_code_exports(self) -> None:
        exported = exported_names()
        for rule in alert_rules():
            unknown = set(_NAME.findall(rule["expr"])) - exported
            assert not unknown, f"{rule['alert']}: {unknown}"


class TestGrafanaDashboard:
    def test_structure(self) -> None:
        board = dashboard()
        assert board["uid"] == "taskhub-overview" and board["title"] == "Taskhub"
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
            covered = {
                (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not covered & cells, f"{panel['title']} overlaps another panel"
            cells |= covered
            if panel["type"] == "row":
                continue
            assert panel["type"] in {"timeseries", "stat", "gauge"}
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert panel["targets"] and len(ref_ids) == len(set(ref_ids)), panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"])
            assert panel["fieldConfig"]["defaults"]["unit"]

    def test_covers_red_per_route_pool_cache_outbox_and_worker(self) -> None:
        exprs = "\n".join(dashboard_exprs())
        for needed in (
            "sum by (method, route) (rate(taskhub_http_requests_total",  # rate per route
            'status=~"5.."',  # errors
            "histogram_quantile(0.95, sum by (method, route, le) (rate(taskhub_http_request_duration_seconds_bucket",
            "taskhub_db_pool_checked_out_connections",
            'taskhub_cache_requests_total{job=~"$api_job", instance=~"$instance", result="hit"}',
            "taskhub_outbox_oldest_unsent_age_seconds",
            "sum by (consumer, outcome) (rate(taskhub_worker_messages_total",
        ):
            assert needed in exprs, needed

    def test_queries_parse_and_name_exported_metrics(self, tmp_path: Path) -> None:
        exported = exported_names()
        rules = []
        for i, expr in enumerate(dashboard_exprs()):
            unknown = set(_NAME.findall(expr)) - exported
            assert not unknown, f"{expr}: {unknown}"
            for var, value in _GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, expr
            rules.append({"record": f"dashboard:query_{i}", "expr": expr})
        # promtool parses recording rules with the real PromQL parser: a typo in a panel fails here.
        (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))
        result = run_promtool("check", "rules", "dashboard-rules.yml", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
