"""The mail relay and the SMS gateway failing — refusing connections, timing out, answering 5xx — and then
recovering: alerts wait, go out once each when the channel is back, and what failed for good is recorded
and visible in ``esup alerts`` and on the pipeline dashboard.

Real components: an SMTP server (aiosmtpd) and an SMS webhook on loopback, the alerting dispatcher with
its delivery log in the embedded warehouse (chDB), the lifecycle tick that re-delivers, the command
line and the dashboards' own ClickHouse query. Logic time (``now``) is driven by the test; the backoff
between tries is recorded instead of slept.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from alerting.dispatcher import Dispatcher
from alerting.lifecycle import process_due
from alerting.log_warehouse import WarehouseDeliveryLog
from alerting.model import delivery_id
from alerting.routing import route_finding
from esup.cli import app
from tests.test_alerting_support import NOW, finding, make_config
from tests.test_reliability_support import receivers  # noqa: F401 - fixture
from warehouse import open_warehouse

GONE = "chief@qy.example.gov.cn"  # this mailbox no longer exists: the relay answers 550 for it


def _failed_total(channel: str) -> float:
    return REGISTRY.get_sample_value("esup_alert_deliveries_total", {"channel": channel, "result": "failed"}) or 0.0


def test_channels_down_then_back_every_alert_goes_out_once_and_permanent_failures_show(
        tmp_path: Path, receivers: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811 - fixture
    mailbox, sms = receivers
    monkeypatch.setenv("ESUP_SMS_TOKEN", "sms-token-for-tests")
    cfg = make_config(
        digest={"window": "60s", "threshold": 10_000},  # one message per notice: each is counted on the wire
        transport={
            "retry": {"attempts": 3, "initial": 1.0, "max": 30.0, "redeliver_after": "10m", "redeliver_max": 6},
            "email": {"kind": "smtp", "smtp": {"host": "127.0.0.1", "port": mailbox.port, "timeout": 2,
                                                "sender": "esup@jc.example.gov.cn"}},
            "sms": {"kind": "webhook", "webhook": {"url": sms.url, "token_env": "ESUP_SMS_TOKEN", "timeout": 0.3}},
        })
    findings = [finding(i, severity="red" if i % 2 else "yellow") for i in range(8)]
    wanted = {delivery_id(f.finding_id, t.recipient_id, ch): (t.recipient_id, ch)
              for f in findings for t in route_finding(f, cfg).targets for ch in t.channels}
    gone = {d for d, (rid, ch) in wanted.items() if ch == "email" and cfg.recipients[rid].email == GONE}
    assert gone and len(wanted) > len(gone) + 8
    mailbox.reply = lambda did, rcpts: "550 5.1.1 mailbox unavailable" if GONE in rcpts else None
    slept: list[float] = []
    data = tmp_path / "data"
    wh = open_warehouse(str(data))
    wh.migrate()
    d = Dispatcher(cfg, WarehouseDeliveryLog(wh), sleep=slept.append)
    failed_email_before = _failed_total("email")
    try:
        # 1. The relay refuses connections and the gateway answers 503: every message is tried three
        #    times with exponential backoff, then recorded as failed.
        mailbox.down()
        sms.status = lambda req: 503
        first = d.deliver(findings, NOW)
        assert first.failed == len(wanted) and first.messages_sent == 0
        assert slept[:2] == [1.0, 2.0] and len(slept) == 2 * len(wanted)
        # 2. Ten minutes on, the relay is back but the gateway now times out (the request hangs past the
        #    client's timeout and is then refused): e-mail goes out, SMS waits again.
        mailbox.up()
        sms.delay = 0.6
        assert process_due(d, NOW + timedelta(minutes=5)).messages_sent == 0  # not due yet
        second = process_due(d, NOW + timedelta(minutes=11))
        sms_wanted = {k for k, (_, ch) in wanted.items() if ch == "sms"}
        assert second.messages_sent == len(wanted) - len(sms_wanted) - len(gone)
        # 3. The gateway recovers: the SMS go out.
        sms.delay = 0.0
        sms.status = lambda req: 200
        third = process_due(d, NOW + timedelta(minutes=25))
        assert third.messages_sent == len(sms_wanted)
        # 4. Later ticks send nothing more; the message to the mailbox that is gone stays failed.
        later = process_due(d, NOW + timedelta(minutes=90))  # before red cards escalate (2 h)
        assert later.messages_sent == 0
    finally:
        d.close()
    on_wire = Counter(mailbox.received) + Counter(sms.received)
    assert set(on_wire) == set(wanted) - gone, "every alert went out, except to the mailbox that is gone"
    assert all(n == 1 for n in on_wire.values()), "and each exactly once"
    assert _failed_total("email") - failed_email_before >= len(gone) + 1
    print(f"\nRELIABILITY alerts: notices={len(wanted)} delivered_once={len(on_wire)} failed_for_good={len(gone)} "
          f"tries_slept={slept[:4]}")

    # What failed for good is visible: esup alerts show, with the relay's answer ...
    runner = CliRunner()
    chief_alert = next(f.finding_id for f in findings if f.severity == "red")
    res = runner.invoke(app, ["alerts", "show", chief_alert, "--warehouse", str(data), "--json"])
    assert res.exit_code == 0, res.output
    attempts = json.loads(res.stdout)["deliveries"]
    to_gone = [a for a in attempts if a["delivery_id"] in gone]
    assert to_gone and to_gone[-1]["result"] == "failed" and "550" in to_gone[-1]["error"]
    assert "permanent" in to_gone[-1]["error"]
    res = runner.invoke(app, ["alerts", "show", chief_alert, "--warehouse", str(data)])
    assert res.exit_code == 0 and "发送失败" in res.stdout
    # ... and on the pipeline dashboard's "告警投递失败（投递记录）" panel, read from ClickHouse.
    from dashboards.build import build_all
    from dashboards.check import run_dashboard

    runs = run_dashboard(wh, build_all()["pipeline"], NOW - timedelta(days=1), NOW + timedelta(days=1))
    panel = next(r for r in runs if r.panel == "告警投递失败（投递记录）")
    assert panel.ok, panel.error
    assert sum(row["邮件"] for row in panel.rows) >= len(gone)
    wh.close()
