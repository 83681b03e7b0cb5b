"""The pipeline's own metrics (Prometheus): every metric esup exports is defined here, once.

Operators watch the pipeline on the 流水线运行状态 dashboard and are paged by the rules in
``dashboards/prometheus/alerts.yml``; both read these names, so a metric is renamed here or nowhere.
Names follow Prometheus conventions (unit suffix, ``_total`` for counters); every label has a small,
closed set of values — an event type, a rule code, a reason *category*, a channel — never a case
number, a person or free text, because each label value is a time series kept for weeks.

The API other modules call (all cheap, thread-safe, safe to call before ``serve_metrics``):

``serve_metrics(port=None, addr=None) -> MetricsServer``
    Serve ``/metrics`` over HTTP in a daemon thread. Port: the argument, else ``ESUP_METRICS_PORT``,
    else 9737 (0 picks a free port; the handle's ``.port`` says which). Address: the argument, else
    ``ESUP_METRICS_ADDR``, else 0.0.0.0 (Prometheus usually scrapes from another host or container).
    Call once per long-running process; a second call returns the running server.
``record_events(items)``
    Lines read from the input (file, stdin, Kafka): counts ``esup_events_consumed_total{type}``
    (``type="invalid"`` for a line that failed the contract) and, for each ``InvalidEvent``,
    ``esup_events_rejected_total{reason}`` with the reason reduced to a category (dead letters).
``record_processed(events)``
    Valid events the engine has applied: ``esup_events_processed_total{type}``.
``record_rejected(reason, n=1)``
    A rejection that is not a decoding failure (e.g. a Kafka message the DLQ producer sends on with
    its own reason); ``reason`` outside ``REJECT_REASONS`` is counted as ``other``.
``record_findings(findings, received_at=None)``
    Findings as the engine returns them: ``esup_findings_total{rule,severity}`` and the latency
    histograms — event time → now (for a deadline finding, the deadline → now: how late the card
    is) and, when ``received_at`` (epoch seconds or an aware datetime) is given, receipt → now.
    Live and embedded drivers call it; an audit replay does not (its findings are not news).
``record_notes(notes)``
    Engine notes (duplicates, events without intake …): ``esup_engine_notes_total{kind}``.
``set_case_states(counts)``
    The number of cases per status (``rules.facts.Status``) in this process's state: ``esup_case_states``.
``clickhouse_write(table, rows)``
    Context manager around one batch write: ``esup_clickhouse_write_seconds{table}`` and
    ``esup_clickhouse_batch_rows{table}`` on success, ``esup_clickhouse_write_errors_total{table}`` on
    an exception (which propagates).
``record_delivery(channel, result, n=1)`` / ``record_deliveries(attempts)``
    Alert delivery outcomes: ``esup_alert_deliveries_total{channel,result}``; results as in
    ``alerting.model.AttemptResult`` (``pending`` is a bookkeeping row, not an outcome, and is skipped).
``set_consumer_lag(topic, partition, lag)``
    Messages behind the end of a partition (Kafka): ``esup_consumer_lag{topic,partition}``.

Metrics live in prometheus-client's default registry, next to its process and platform collectors
(CPU, memory, open files), so ``/metrics`` also shows the process's health.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter as _Tally
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

DEFAULT_PORT = 9737
"""``/metrics`` port when neither the caller nor ``ESUP_METRICS_PORT`` names one."""

# ------------------------------------------------------------------------------ vocabularies
# Closed label sets: anything else becomes "other", so a bug upstream cannot explode cardinality.

EVENT_TYPES: frozenset[str] = frozenset({
    "submitted", "accepted", "intake_rejected", "supplement_requested", "supplement_received",
    "step_completed", "suspended", "resumed", "extension_granted", "fee_assessed", "fee_paid", "fee_waived",
    "fee_refunded", "decided", "completed", "delivered", "withdrawn", "rated", "rating_resolved",
    "complaint_filed", "complaint_resolved",
})
"""The event contract's types (``schemas.events.EVENT_TYPES``; a test keeps the two equal)."""

REJECT_REASONS: frozenset[str] = frozenset({
    "malformed_json",  # not JSON at all, or truncated
    "too_large",  # over the per-event byte limit
    "missing_field",  # a required field is absent
    "unknown_type",  # event_type not in the contract
    "bad_time",  # a time that is not ISO 8601 with an offset
    "invalid_value",  # any other contract violation (a wrong type, a negative amount …)
    "other",
})

CASE_STATUSES: tuple[str, ...] = ("submitted", "accepted", "paused", "decided", "completed", "rejected",
                                  "withdrawn", "unknown")
NOTE_KINDS: frozenset[str] = frozenset({"duplicate_event", "no_intake", "unknown_item", "impossible_transition"})
CHANNELS: frozenset[str] = frozenset({"email", "sms"})
DELIVERY_RESULTS: frozenset[str] = frozenset({"sent", "error", "failed", "deferred", "cancelled"})
SEVERITIES: frozenset[str] = frozenset({"yellow", "red"})
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RULE = re.compile(r"^[A-Z]+\.[A-Z_]{1,60}$")

# ------------------------------------------------------------------------------ the metrics

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 3 * 3600,
                    12 * 3600, 86400, 3 * 86400)
_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ROW_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10_000, 50_000, 100_000, 500_000)

EVENTS_CONSUMED = Counter("esup_events_consumed", "Input lines read, by event type ('invalid' if it failed the contract).",
                          ["type"])
EVENTS_PROCESSED = Counter("esup_events_processed", "Valid events applied by the supervision engine, by type.", ["type"])
EVENTS_REJECTED = Counter("esup_events_rejected", "Input lines rejected (dead-lettered), by reason category.", ["reason"])
FINDINGS = Counter("esup_findings", "Supervision findings raised, by rule code and severity (yellow/red card).",
                   ["rule", "severity"])
NOTES = Counter("esup_engine_notes", "Events the engine could not use as rule input, by note kind.", ["kind"])
PROCESSING_LATENCY = Histogram(
    "esup_processing_latency_seconds",
    "Time from an event (or a deadline) to its finding: since=event_time measures from the event/deadline "
    "instant, since=received from when the line was received.",
    ["since"], buckets=_LATENCY_BUCKETS)
CASE_STATES = Gauge("esup_case_states", "Cases held in this process's state, by status.", ["status"])
CH_BATCH_ROWS = Histogram("esup_clickhouse_batch_rows", "Rows per batch written to ClickHouse, by table.", ["table"],
                          buckets=_ROW_BUCKETS)
CH_WRITE_SECONDS = Histogram("esup_clickhouse_write_seconds", "Duration of one successful ClickHouse batch write.",
                             ["table"], buckets=_WRITE_BUCKETS)
CH_WRITE_ERRORS = Counter("esup_clickhouse_write_errors", "ClickHouse batch writes that raised, by table.", ["table"])
ALERT_DELIVERIES = Counter("esup_alert_deliveries", "Alert delivery outcomes, by channel and result.",
                           ["channel", "result"])
CONSUMER_LAG = Gauge("esup_consumer_lag", "Messages between the committed offset and the end of a partition.",
                     ["topic", "partition"])

for _status in CASE_STATUSES:  # present from the start, so a dashboard shows 0 rather than "no data"
    CASE_STATES.labels(_status).set(0)

# ------------------------------------------------------------------------------ helpers


def _closed(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


def rejection_reason(error: str) -> str:
    """Reduce a contract error (``InvalidEvent.error``) to a category: the label must never carry the
    offending value or line, only what kind of problem it was."""
    if error.startswith("malformed JSON"):
        return "malformed_json"
    if "-byte limit" in error:
        return "too_large"
    if "missing required field" in error:
        return "missing_field"
    if "$.event_type" in error:
        return "unknown_type"
    if ("datetime" in error or "UTC offset" in error or "$.occurred_at" in error or "$.recorded_at" in error
            or "$.due_at" in error):
        return "bad_time"
    if error.startswith("schema"):
        return "invalid_value"
    return "other"


def _event_type(item: Any) -> str:
    tag = getattr(type(item), "__struct_config__", None)
    tag = getattr(tag, "tag", None)
    if isinstance(tag, str):
        return tag if tag in EVENT_TYPES else "other"
    return "invalid" if hasattr(item, "error") else "other"


def _epoch(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return value.timestamp()


# ------------------------------------------------------------------------------ the API


def record_events(items: Iterable[Any]) -> None:
    """Count lines read: valid events by type, ``InvalidEvent`` as ``invalid`` plus a rejection.

    Counts are tallied first and added once per label, so a million-line file costs one pass of
    ``type()`` calls, not a million counter updates.
    """
    by_type: _Tally[str] = _Tally()
    reasons: _Tally[str] = _Tally()
    for item in items:
        kind = _event_type(item)
        by_type[kind] += 1
        if kind == "invalid":
            reasons[rejection_reason(str(getattr(item, "error", "")))] += 1
    for kind, n in by_type.items():
        EVENTS_CONSUMED.labels(kind).inc(n)
    for reason, n in reasons.items():
        EVENTS_REJECTED.labels(reason).inc(n)


def record_processed(events: Iterable[Any]) -> None:
    """Count valid events the engine has applied, by type."""
    for kind, n in _Tally(_event_type(e) for e in events).items():
        EVENTS_PROCESSED.labels(kind).inc(n)


def record_rejected(reason: str, n: int = 1) -> None:
    """Count ``n`` rejections for a reason category (see ``REJECT_REASONS``)."""
    EVENTS_REJECTED.labels(_closed(reason, REJECT_REASONS)).inc(n)


def record_findings(findings: Iterable[Any], received_at: float | datetime | None = None) -> None:
    """Count findings by rule and severity and observe how late each came (see the module docstring).

    Negative latencies (a clock ahead of this host's) are recorded as 0 rather than dropped.
    """
    now = time.time()
    received = _epoch(received_at)
    tally: _Tally[tuple[str, str]] = _Tally()
    since_event = PROCESSING_LATENCY.labels("event_time")
    since_received = PROCESSING_LATENCY.labels("received")
    for f in findings:
        rule = f.rule if _RULE.match(f.rule) else "other"
        tally[(rule, _closed(f.severity, SEVERITIES))] += 1
        since_event.observe(max(0.0, now - f.fired_at.timestamp()))
        if received is not None:
            since_received.observe(max(0.0, now - received))
    for (rule, severity), n in tally.items():
        FINDINGS.labels(rule, severity).inc(n)


def record_notes(notes: Iterable[Any]) -> None:
    """Count engine notes by kind (``rules.findings.Note.kind``)."""
    for kind, n in _Tally(_closed(n.kind, NOTE_KINDS) for n in notes).items():
        NOTES.labels(kind).inc(n)


def set_case_states(counts: Mapping[str, int]) -> None:
    """Set the number of cases per status; statuses not given are set to 0 (the state is complete)."""
    other = sum(n for s, n in counts.items() if s not in CASE_STATUSES)
    for status in CASE_STATUSES:
        CASE_STATES.labels(status).set(counts.get(status, 0) + (other if status == "unknown" else 0))


@contextmanager
def clickhouse_write(table: str, rows: int) -> Iterator[None]:
    """Time one batch write to ``table`` of ``rows`` rows; count it as an error if the block raises."""
    label = table if _IDENT.match(table) else "other"
    began = time.perf_counter()
    try:
        yield
    except BaseException:
        CH_WRITE_ERRORS.labels(label).inc()
        raise
    CH_WRITE_SECONDS.labels(label).observe(time.perf_counter() - began)
    CH_BATCH_ROWS.labels(label).observe(rows)


def record_delivery(channel: str, result: str, n: int = 1) -> None:
    """Count ``n`` delivery outcomes; ``pending`` (written before a send) is not an outcome and is skipped."""
    if result == "pending":
        return
    ALERT_DELIVERIES.labels(_closed(channel, CHANNELS), _closed(result, DELIVERY_RESULTS)).inc(n)


def record_deliveries(attempts: Iterable[Any]) -> None:
    """Count delivery attempts (objects with ``channel`` and ``result``, e.g. ``DeliveryAttempt``)."""
    for (channel, result), n in _Tally((a.channel, a.result) for a in attempts).items():
        record_delivery(channel, result, n)


def set_consumer_lag(topic: str, partition: int | str, lag: int) -> None:
    """Set how many messages a partition's consumer is behind."""
    CONSUMER_LAG.labels(topic, str(partition)).set(max(0, lag))


# ------------------------------------------------------------------------------ serving


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint: where it listens, and how to stop it (tests do; daemons need not)."""

    addr: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.addr in ("0.0.0.0", "") else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        global _serving
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        with _serve_lock:
            if _serving is self:
                _serving = None


_serve_lock = threading.Lock()
_serving: MetricsServer | None = None


def metrics_port(port: int | None = None) -> int:
    """The port to serve on: the argument, else ``ESUP_METRICS_PORT``, else ``DEFAULT_PORT``."""
    if port is not None:
        return port
    env = os.environ.get("ESUP_METRICS_PORT", "").strip()
    if not env:
        return DEFAULT_PORT
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"ESUP_METRICS_PORT={env!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"ESUP_METRICS_PORT={env!r} is not a port number (0–65535)")
    return value


def serve_metrics(port: int | None = None, addr: str | None = None) -> MetricsServer:
    """Serve ``/metrics`` in a daemon thread (see the module docstring); idempotent per process."""
    global _serving
    with _serve_lock:
        if _serving is not None:
            return _serving
        host = addr if addr is not None else os.environ.get("ESUP_METRICS_ADDR", "0.0.0.0")
        server, thread = start_http_server(metrics_port(port), addr=host, registry=REGISTRY)
        _serving = MetricsServer(host, server.server_port, server, thread)
        return _serving
