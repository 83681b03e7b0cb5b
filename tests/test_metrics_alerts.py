"""The pipeline's Prometheus alert rules: valid, and firing exactly when alerts_test.yml says.

``promtool test rules`` replays the synthetic series of ``dashboards/prometheus/alerts_test.yml``
through ``alerts.yml`` and compares every alert's labels and Chinese annotations at given times.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parent.parent / "dashboards" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (make servers / scripts/install-servers.sh installs it)")
    return path


def test_alert_rules_are_valid(promtool: str) -> None:
    proc = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=RULES_DIR, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_fire_as_the_unit_tests_expect(promtool: str) -> None:
    proc = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES_DIR, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_is_tested_and_has_chinese_annotations() -> None:
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text(encoding="utf-8"))
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text(encoding="utf-8"))
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    fired = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    assert names == fired, f"alerts without a test that makes them fire: {sorted(names - fired)}"
    for g in rules["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in ("warning", "critical")
            assert any("\u4e00" <= ch <= "\u9fff" for ch in r["annotations"]["summary"]), r["alert"]


def test_the_scrape_config_loads_the_rules(promtool: str) -> None:
    proc = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=RULES_DIR, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alerts.yml" in proc.stdout
