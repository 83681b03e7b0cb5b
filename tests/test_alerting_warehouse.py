"""The delivery log on the ClickHouse warehouse (embedded chDB): the same guarantees as the JSONL log.

Runs the real dispatcher against ``alerting.log_warehouse.WarehouseDeliveryLog`` on a fresh chDB
directory: once across a "restart" (a new log object on the same tables), digests for a burst, held
notices surviving a restart, lifecycle, and the rows as the warehouse's tables define them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from alerting import acknowledge, deliver_findings
from alerting.dispatcher import Dispatcher
from alerting.lifecycle import process_due
from alerting.model import delivery_id
from tests.test_alerting_support import NOW, PII_MESSAGE, finding, leaks, make_config

warehouse = pytest.importorskip("warehouse", reason="the warehouse package is not importable")
if not hasattr(warehouse, "open_warehouse"):  # pragma: no cover - while warehouse/ is being built
    pytest.skip("warehouse.open_warehouse is not available yet", allow_module_level=True)

from alerting.log_warehouse import WarehouseDeliveryLog  # noqa: E402


@pytest.fixture
def wh_log(tmp_path: Path) -> Iterator[WarehouseDeliveryLog]:
    log = WarehouseDeliveryLog.open(f"chdb://{tmp_path / 'wh'}")
    try:
        yield log
    finally:
        log.close()


@pytest.mark.slow
def test_warehouse_log_keeps_delivery_once_digests_and_lifecycle(
    wh_log: WarehouseDeliveryLog, tmp_path: Path
) -> None:
    cfg = make_config()
    out = str(tmp_path / "out")
    f = finding(1, message=PII_MESSAGE)
    first = deliver_findings([f], cfg, wh_log, NOW, outbox_dir=out)
    assert first.messages_sent == 4
    # restart: a fresh log object on the same tables knows what was delivered
    again = deliver_findings(
        [f], cfg, WarehouseDeliveryLog(wh_log.wh), NOW + timedelta(minutes=1), outbox_dir=out
    )
    assert again.messages_sent == 0 and again.already_delivered == 4

    # rows as the warehouse defines them: result 'ok', recipient ids, no address, no personal data
    rows = wh_log.wh.query(
        "SELECT result, recipient, channel, kind, digest, detail FROM alert_deliveries WHERE alert_id = {a:String}",
        {"a": f.finding_id},
    )
    assert {r["result"] for r in rows} == {"pending", "ok"}
    assert {r["recipient"] for r in rows} == {"jjjc", "chief"}
    assert all("13900000" not in r["detail"] and "@" not in r["detail"] for r in rows)
    life = wh_log.wh.query(
        "SELECT status, severity, detail FROM alert_lifecycle WHERE alert_id = {a:String}",
        {"a": f.finding_id},
    )
    assert life[0]["status"] == "open" and leaks(life[0]["detail"]) == []

    # a burst: digests, and the digest rows carry what they covered
    burst = [finding(100 + i, rule="FEE.CASH_AT_WINDOW") for i in range(500)]
    r = deliver_findings(burst, cfg, wh_log, NOW + timedelta(minutes=5), outbox_dir=out)
    assert r.digests_sent == 4 and r.notices_in_digests == 2000
    stats = wh_log.sent_stats("jjjc", "email", NOW + timedelta(minutes=4))
    assert stats.notices == 500 and stats.messages == 1 and stats.last_digest_at == NOW + timedelta(minutes=5)

    # held notices survive a restart: the next dispatcher finds them in the warehouse
    late = finding(900)
    held = Dispatcher(cfg, wh_log, outbox_dir=out).deliver([late], NOW + timedelta(minutes=5, seconds=10))
    assert held.deferred == 4 and held.messages_sent == 0
    restarted = Dispatcher(cfg, WarehouseDeliveryLog(wh_log.wh), outbox_dir=out)
    flushed = process_due(restarted, NOW + timedelta(minutes=6, seconds=10))
    assert flushed.messages_sent == 4
    assert wh_log.already_delivered(delivery_id(late.finding_id, "jjjc", "sms"))

    # lifecycle through the warehouse
    acknowledge(wh_log, f.finding_id, "王监察", NOW + timedelta(minutes=30))
    assert wh_log.get_alert(f.finding_id).status == "acknowledged"  # type: ignore[union-attr]
    esc = process_due(restarted, NOW + timedelta(hours=3))
    assert esc.escalated == 501  # 502 red alerts, all but the acknowledged one
    assert esc.sent == {"city": {"email": 1, "sms": 1}}  # as one digest per channel
    assert len(wh_log.list_alerts(statuses=["acknowledged"])) == 1
    shown = wh_log.attempts(alert_id=burst[0].finding_id)
    assert any(a.kind == "digest" for a in shown) and any(a.digest_id for a in shown)
