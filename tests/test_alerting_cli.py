"""``esup alerts list|show|ack|resolve|dismiss|tick`` on a real JSONL delivery log."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from alerting import JsonlDeliveryLog, deliver_findings
from esup.cli import app
from tests.test_alerting_support import NOW, PII_MESSAGE, finding, leaks, make_config

runner = CliRunner()


def _setup(tmp_path: Path) -> tuple[Path, list[str]]:
    log_dir = tmp_path / "log"
    fs = [finding(1, message=PII_MESSAGE), finding(2, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")]
    deliver_findings(fs, make_config(), JsonlDeliveryLog(log_dir), NOW, outbox_dir=str(tmp_path / "out"))
    return log_dir, [f.finding_id for f in fs]


def test_list_show_ack_resolve_round_trip(tmp_path: Path) -> None:
    log_dir, (red, yellow) = _setup(tmp_path)
    r = runner.invoke(app, ["alerts", "list", "--log", str(log_dir), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["total"] == 2 and {a["alert_id"] for a in data["alerts"]} == {red, yellow}
    assert all(leaks(a["finding"]["message"]) == [] for a in data["alerts"])

    r = runner.invoke(app, ["alerts", "list", "--log", str(log_dir)])
    assert r.exit_code == 0 and "告警（共 2 条" in r.output and "待签收" in r.output

    r = runner.invoke(app, ["alerts", "show", red[:10], "--log", str(log_dir), "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["alert"]["severity_label"] == "红牌" and shown["alert"]["rule_name"] == "超承诺时限"
    assert {d["result"] for d in shown["deliveries"]} == {"pending", "sent"} and len(shown["deliveries"]) == 8
    assert leaks(r.output) == []

    r = runner.invoke(app, ["alerts", "show", red, "--log", str(log_dir)])
    assert r.exit_code == 0 and "投递记录（8 条）" in r.output and "已送达" in r.output

    at = (NOW + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S")
    r = runner.invoke(app, ["alerts", "ack", red, "--by", "王监察", "--at", at, "--log", str(log_dir)])
    assert (
        r.exit_code == 0
        and "已签收告警" in r.output
        and "王监察" in r.output
        and "2026-11-23 10:20" in r.output
    )

    r = runner.invoke(app, ["alerts", "ack", red, "--by", "李四", "--log", str(log_dir)])
    assert r.exit_code == 1 and "不能签收" in r.output

    r = runner.invoke(
        app,
        [
            "alerts",
            "resolve",
            yellow,
            "--by",
            "首席代表",
            "--reason",
            "已办结",
            "--log",
            str(log_dir),
            "--json",
        ],
    )
    assert r.exit_code == 0 and json.loads(r.output)["status"] == "resolved"

    r = runner.invoke(
        app, ["alerts", "dismiss", red, "--by", "王监察", "--reason", "误报", "--log", str(log_dir)]
    )
    assert r.exit_code == 0 and "已撤销告警" in r.output

    r = runner.invoke(app, ["alerts", "list", "--log", str(log_dir), "--json"])
    assert json.loads(r.output)["total"] == 0  # default: only open and acknowledged
    r = runner.invoke(app, ["alerts", "list", "--status", "all", "--log", str(log_dir), "--json"])
    assert {a["status"] for a in json.loads(r.output)["alerts"]} == {"resolved", "dismissed"}

    r = runner.invoke(app, ["alerts", "show", "nope", "--log", str(log_dir)])
    assert r.exit_code == 1 and "找不到告警" in r.output


def test_tick_escalates_from_the_command_line(tmp_path: Path) -> None:
    log_dir, (red, _) = _setup(tmp_path)
    cfg = tmp_path / "routing.yaml"
    import yaml

    from tests.test_alerting_support import config_dict

    cfg.write_text(yaml.safe_dump(config_dict(), allow_unicode=True), encoding="utf-8")
    at = (NOW + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S")
    r = runner.invoke(
        app,
        [
            "alerts",
            "tick",
            "--at",
            at,
            "--config",
            str(cfg),
            "--log",
            str(log_dir),
            "--outbox",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["escalated"] == 1 and report["upgraded"] == 0  # yellow limit in this config is 4h
    assert report["sent"] == {"city": {"email": 1, "sms": 1}}
    r = runner.invoke(app, ["alerts", "list", "--severity", "red", "--log", str(log_dir)])
    assert "已升级" in r.output
