"""Metrics of the live driver.

The pipeline's metrics are defined once, in ``esup.metrics`` (the dashboards and the Prometheus alert
rules read those names): events consumed and rejected, events processed, findings and their latency
(event or deadline → finding, and receipt → finding), engine notes, cases by status, consumer lag,
ClickHouse writes, alert deliveries. ``count_effects`` feeds them from what a batch or a tick produced.

Figures only the live driver has are defined here, under ``esup_stream_``: records applied by
result (valid, invalid), records held back to be read again (``streams.order``), findings by source (an event, or
the ticker: a deadline nobody sent an event for), the cases with a pending deadline (the ticker's
index), the time a batch takes to become durable (the commit order of ``streams.commit``), and
problems by kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from esup import metrics as m
from schemas.events import InvalidEvent

EVENTS = Counter("esup_stream_events", "Input records applied by this worker, by result (valid, invalid)", ["result"])
HELD = Counter("esup_stream_records_held", "Records an agent did not process and will read again, by topic and "
               "reason (gap, reread, unpositioned, moved: see streams.order)", ["topic", "reason"])
FINDINGS = Counter("esup_stream_findings", "Findings raised by this worker, by source (event or ticker)", ["source"])
DEADLINES = Gauge("esup_stream_deadlines_pending", "Cases with a pending deadline in this worker's ticker index")
BATCH_SECONDS = Histogram("esup_stream_durable_seconds", "Time for a batch or tick to become durable: effects, "
                          "then state, then offsets released", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ERRORS = Counter("esup_stream_errors", "Problems of the live driver by kind (ticker, warehouse, alerting)", ["kind"])
STALE_ACKS = Counter("esup_stream_unacked_after_rebalance",
                     "Input records left unacknowledged because a rebalance came while their batch was in flight "
                     "(read again after it)")


def count_effects(decoded: Iterable[Any], notes: Iterable[Any], findings: list[Any],
                  received: list[float | None], *, source: str = "event") -> None:
    """Record what one batch (or tick) read and produced."""
    decoded = list(decoded)
    invalid = sum(1 for e in decoded if isinstance(e, InvalidEvent))
    if decoded:
        EVENTS.labels("valid").inc(len(decoded) - invalid)
        EVENTS.labels("invalid").inc(invalid)
    if findings:
        FINDINGS.labels(source).inc(len(findings))
    if decoded:
        m.record_events(decoded)
        m.record_processed(e for e in decoded if not isinstance(e, InvalidEvent))
    notes = list(notes)
    if notes:
        m.record_notes(notes)
    if findings:
        if not any(r is not None for r in received):
            m.record_findings(findings)
        else:
            for f, r in zip(findings, received, strict=True):
                m.record_findings([f], received_at=r)


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0: not at all)."""
    if port:
        m.serve_metrics(port)
