"""The Prometheus alert rules in deploy/alerts fire on the series they are meant for, and are deployed.

``promtool test rules`` feeds each rule the synthetic series of medsettle.rules.test.yml and checks
which alerts fire when, with what labels and text. promtool comes from Debian's ``prometheus``
package (.ci/run installs it); without it those tests are skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_deploy import COMPOSE, DEPLOY, K8S, _compose, _documents, _exported_metric_names, _one

ALERTS = DEPLOY / "alerts"
RULES = ALERTS / "medsettle.rules.yml"
RULE_TESTS = ALERTS / "medsettle.rules.test.yml"
# Metrics a rule watches that another part of the gateway is to export; each still has a promtool test.
COMING_METRICS = {"medsettle_readjudication_backlog"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)"
)


def _promtool(*arguments: str | Path, cwd: Path = ALERTS) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, arguments)], cwd=cwd, capture_output=True, text=True, timeout=60)


def _rules() -> list[dict[str, str]]:
    return [rule for group in _documents(RULES)[0]["groups"] for rule in group["rules"]]


@needs_promtool
def test_rules_are_valid() -> None:
    checked = _promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_rules_fire_as_their_unit_tests_say() -> None:
    tested = _promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_the_unit_tests_catch_a_rule_that_waits_too_long(tmp_path: Path) -> None:
    """A database outage that pages only after 10 minutes instead of 1 fails the rule tests."""
    slow = RULES.read_text(encoding="utf-8").replace(
        "expr: medsettle_database_up == 0\n        for: 1m", "expr: medsettle_database_up == 0\n        for: 10m"
    )
    assert slow != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(slow, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0
    assert "MedsettleDatabaseUnavailable" in tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in _documents(RULE_TESTS)[0]["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _rules()} == tested


def test_rules_watch_the_gateways_metrics() -> None:
    used = {name for rule in _rules() for name in re.findall(r"\bmedsettle_[a-z0-9_]+", rule["expr"])}
    assert {"medsettle_database_up", "medsettle_audit_sealed_timestamp_seconds"} <= used
    assert used - COMING_METRICS <= _exported_metric_names(), sorted(used - COMING_METRICS - _exported_metric_names())


def test_compose_prometheus_loads_the_rules() -> None:
    config = _documents(COMPOSE / "prometheus.yml")[0]
    mounts = dict(volume.split(":")[:2] for volume in _compose()["services"]["prometheus"]["volumes"])
    loaded = [source for source, target in mounts.items() if target in config["rule_files"]]
    assert [(COMPOSE / source).resolve() for source in loaded] == [RULES.resolve()]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"medsettle"}  # as MedsettleGatewayDown says


def test_kubernetes_config_map_holds_the_same_rules() -> None:
    config_map = _one("ConfigMap", "medsettle-alert-rules")
    assert config_map["data"] == {RULES.name: RULES.read_text(encoding="utf-8")}
    assert (K8S / "alert-rules.yaml").is_file()
    assert yaml.safe_load(config_map["data"][RULES.name]) == _documents(RULES)[0]
