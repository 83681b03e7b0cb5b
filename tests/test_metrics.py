"""esup.metrics: the names and label sets the dashboards and alert rules read, and the helpers others call.

Counters are process-wide, so every test compares a value before and after (``_delta``).
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from esup import metrics
from rules.findings import Finding, Note, finding_id
from schemas.events import EVENT_TYPES, decode_event

VALID = (b'{"event_type":"accepted","event_id":"e1","case_id":"C1","occurred_at":"2026-10-08T09:00:00+08:00",'
         b'"source":"sys"}')


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _delta(name: str, labels: dict[str, str], action: Callable[[], Any]) -> float:
    before = value(name, **labels)
    action()
    return value(name, **labels) - before


def finding(rule: str = "FEE.CASH_AT_WINDOW", severity: str = "red", fired_at: datetime | None = None) -> Finding:
    cid = "C1"
    return Finding(finding_id=finding_id(cid, rule, rule), rule=rule, severity=severity, case_id=cid,  # type: ignore[arg-type]
                   item_code=None, department=None, window=None, region_code=None, officer_id=None,
                   fired_at=fired_at or datetime.now(UTC), message="m", basis="b", catalog_version=None,
                   occurrence=rule)


def test_the_names_the_dashboards_and_alerts_read_are_exported() -> None:
    names = {m.name for m in REGISTRY.collect()}
    for family in ("esup_events_consumed", "esup_events_processed", "esup_events_rejected", "esup_findings",
                   "esup_processing_latency_seconds", "esup_case_states", "esup_clickhouse_batch_rows",
                   "esup_clickhouse_write_seconds", "esup_clickhouse_write_errors", "esup_alert_deliveries",
                   "esup_consumer_lag", "esup_engine_notes"):
        assert family in names, family


def test_vocabularies_match_the_event_contract_and_case_statuses() -> None:
    from typing import get_args

    from rules.facts import Status

    assert metrics.EVENT_TYPES == set(EVENT_TYPES)
    assert set(metrics.CASE_STATUSES) == set(get_args(Status))
    from alerting.model import AttemptResult

    assert metrics.DELIVERY_RESULTS == set(get_args(AttemptResult)) - {"pending"}


def test_record_events_counts_types_and_turns_bad_lines_into_reason_categories() -> None:
    ok = decode_event(VALID)
    bad_json = decode_event(b'{"event_type": "accepted", ')
    unknown = decode_event(VALID.replace(b'"accepted"', b'"case_archived"'))
    missing = decode_event(b'{"event_type":"accepted","case_id":"C1"}')
    naive = decode_event(VALID.replace(b"+08:00", b""))
    items = [ok, ok, bad_json, unknown, missing, naive]
    before = {k: value("esup_events_rejected_total", reason=k)
              for k in ("malformed_json", "unknown_type", "missing_field", "bad_time")}
    assert _delta("esup_events_consumed_total", {"type": "accepted"}, lambda: metrics.record_events(items)) == 2
    for k, v in before.items():
        assert value("esup_events_rejected_total", reason=k) - v == 1, k
    assert value("esup_events_consumed_total", type="invalid") >= 4
    assert _delta("esup_events_processed_total", {"type": "accepted"}, lambda: metrics.record_processed([ok])) == 1


def test_rejection_reasons_stay_in_the_closed_set_for_every_malformed_line_the_simulator_makes() -> None:
    import random

    from simulator import malformed_line

    rng = random.Random(5)
    for _ in range(300):
        inv = decode_event(malformed_line(rng, VALID + b"\n").strip())
        assert hasattr(inv, "error")
        assert metrics.rejection_reason(inv.error) in metrics.REJECT_REASONS
    assert metrics.rejection_reason("anything new") == "other"
    # the label never carries the offending value itself
    assert _delta("esup_events_rejected_total", {"reason": "other"},
                  lambda: metrics.record_rejected("61011320261008000001 broke")) == 1


def test_record_findings_counts_by_rule_and_severity_and_observes_latency() -> None:
    late = datetime.now(UTC) - timedelta(minutes=10)
    count = "esup_processing_latency_seconds_count"
    total = "esup_processing_latency_seconds_sum"
    e0, r0 = value(count, since="event_time"), value(count, since="received")
    s0 = value(total, since="event_time")
    d = _delta("esup_findings_total", {"rule": "FEE.CASH_AT_WINDOW", "severity": "red"},
               lambda: metrics.record_findings([finding(fired_at=late), finding(fired_at=late)],
                                               received_at=datetime.now(UTC) - timedelta(seconds=2)))
    assert d == 2
    assert value(count, since="event_time") - e0 == 2 and value(count, since="received") - r0 == 2
    assert 2 * 590 < value(total, since="event_time") - s0 < 2 * 700
    assert _delta("esup_findings_total", {"rule": "other", "severity": "red"},
                  lambda: metrics.record_findings([finding(rule="not a rule code")])) == 1


def test_notes_case_states_lag_deliveries() -> None:
    note = Note(kind="duplicate_event", case_id="C1", event_id="e1", message="重复")
    assert _delta("esup_engine_notes_total", {"kind": "duplicate_event"}, lambda: metrics.record_notes([note])) == 1
    metrics.set_case_states({"accepted": 7, "completed": 3, "weird": 2})
    assert value("esup_case_states", status="accepted") == 7
    assert value("esup_case_states", status="unknown") == 2 and value("esup_case_states", status="paused") == 0
    metrics.set_case_states({})
    assert value("esup_case_states", status="accepted") == 0
    metrics.set_consumer_lag("case-events", 3, 42)
    assert value("esup_consumer_lag", topic="case-events", partition="3") == 42

    class A:
        def __init__(self, channel: str, result: str) -> None:
            self.channel, self.result = channel, result

    attempts = [A("sms", "failed"), A("sms", "pending"), A("email", "sent"), A("fax", "sent")]
    f0 = value("esup_alert_deliveries_total", channel="sms", result="failed")
    o0 = value("esup_alert_deliveries_total", channel="other", result="sent")
    metrics.record_deliveries(attempts)
    assert value("esup_alert_deliveries_total", channel="sms", result="failed") - f0 == 1
    assert value("esup_alert_deliveries_total", channel="other", result="sent") - o0 == 1
    assert value("esup_alert_deliveries_total", channel="sms", result="pending") == 0


def test_clickhouse_write_times_successes_and_counts_failures() -> None:
    n0 = value("esup_clickhouse_write_seconds_count", table="findings")
    r0 = value("esup_clickhouse_batch_rows_sum", table="findings")
    with metrics.clickhouse_write("findings", 120):
        pass
    assert value("esup_clickhouse_write_seconds_count", table="findings") - n0 == 1
    assert value("esup_clickhouse_batch_rows_sum", table="findings") - r0 == 120

    def failing() -> None:
        with pytest.raises(ConnectionError), metrics.clickhouse_write("findings", 5):
            raise ConnectionError("server gone")

    assert _delta("esup_clickhouse_write_errors_total", {"table": "findings"}, failing) == 1
    assert value("esup_clickhouse_write_seconds_count", table="findings") - n0 == 1  # failures are not timed
    assert _delta("esup_clickhouse_write_errors_total", {"table": "other"},
                  lambda: pytest.raises(ValueError, _raise_in_write, "Robert'); DROP TABLE")) == 1


def _raise_in_write(table: str) -> None:
    with metrics.clickhouse_write(table, 1):
        raise ValueError("x")


def test_metrics_port_comes_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESUP_METRICS_PORT", raising=False)
    assert metrics.metrics_port() == metrics.DEFAULT_PORT
    monkeypatch.setenv("ESUP_METRICS_PORT", "9555")
    assert metrics.metrics_port() == 9555 and metrics.metrics_port(1234) == 1234
    monkeypatch.setenv("ESUP_METRICS_PORT", "nine")
    with pytest.raises(ValueError, match="ESUP_METRICS_PORT"):
        metrics.metrics_port()


def test_serve_metrics_serves_the_text_format_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ESUP_METRICS_PORT", str(port))
    server = metrics.serve_metrics(addr="127.0.0.1")
    try:
        assert server.port == port
        assert metrics.serve_metrics() is server  # a second caller in the same process shares it
        metrics.record_processed([decode_event(VALID)])
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            text = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "esup_events_processed" in families and "esup_case_states" in families
        assert "process_cpu_seconds" in families  # the process collector rides along
    finally:
        server.close()
    assert metrics.serve_metrics(port=0, addr="127.0.0.1").port not in (0, port)
    metrics.serve_metrics().close()
