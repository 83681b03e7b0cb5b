"""Prometheus metrics of the live driver: throughput, lag, errors, latency, deadlines, warehouse, alerts.

Names start with ``esup_stream_`` (dashboards/ reads them). Lag is per partition this worker owns:
the broker's end offset minus the next offset to apply, so a stuck partition shows up alone.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS = Counter("esup_stream_events_total", "Input records applied, by result", ["result"])
FINDINGS = Counter("esup_stream_findings_total", "Findings raised, by rule, severity and source",
                   ["rule", "severity", "source"])
BATCH_SECONDS = Histogram("esup_stream_batch_seconds", "Time from a batch entering the commit pipeline to its "
                          "offsets being released", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LATENCY = Histogram("esup_stream_event_latency_seconds", "Broker timestamp of an input record to its effects "
                    "being durable", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
LAG = Gauge("esup_stream_lag_records", "Records of an owned input partition not yet applied", ["partition"])
DEADLINES = Gauge("esup_stream_deadlines_pending", "Cases with a pending deadline on this worker")
OVERDUE_DELAY = Histogram("esup_stream_deadline_delay_seconds", "Wall time between a deadline and the tick "
                          "that fired it", buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 3600))
ERRORS = Counter("esup_stream_errors_total", "Problems seen, by kind", ["kind"])
WAREHOUSE_ROWS = Counter("esup_stream_warehouse_rows_total", "Rows written to ClickHouse, by table", ["table"])
WAREHOUSE_SECONDS = Histogram("esup_stream_warehouse_write_seconds", "One ClickHouse write of the sink",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ALERTS = Counter("esup_stream_alert_findings_total", "Findings handed to alerting, by outcome", ["outcome"])


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0: not at all)."""
    if port:
        start_http_server(port)
