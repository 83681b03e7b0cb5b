"""The warehouse sink: ``warehouse-batches`` messages into ClickHouse, acknowledged only once stored.

A separate agent on its own topic, not a call inside the supervise agent, so that

* a slow or unavailable ClickHouse delays the warehouse, never findings and alerts (supervision
  writes to Kafka only; the sink catches up when ClickHouse is back);
* writes are large: one ClickHouse insert per ``sink_batch_max`` messages of hundreds of rows;
* chDB, which one process owns, still works with several supervise workers: run them with
  ``--role supervise`` and one ``esup worker --role sink`` (its own consumer group) on the chDB
  directory. With a ClickHouse server every worker simply runs the sink for its partitions.

The rows are idempotent (deterministic ids, ReplacingMergeTree), so a batch written twice after a
crash is stored once.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import ExitStack
from typing import Any

from esup.metrics import clickhouse_write
from schemas.events import decode_event
from streams.records import decode_batch

log = logging.getLogger(__name__)


class WarehouseWriter:
    def __init__(self, target: str | None, *, naive_tz: Any = None) -> None:
        from warehouse import Sink, open_warehouse

        self.target = target
        self.wh = open_warehouse(target)
        applied = self.wh.migrate()
        if applied:
            log.info("warehouse migrations applied: %s", ", ".join(applied))
        # Flushed explicitly after every write; no background timer (the agent decides when).
        self.sink = Sink(self.wh, max_rows=1_000_000, max_seconds=0)
        self.naive_tz = naive_tz

    def write(self, messages: list[bytes]) -> Counter[str]:
        """Store every row of ``messages``; returns when ClickHouse has them (raises if it could not)."""
        rows: Counter[str] = Counter()
        sink = self.sink
        for data in messages:
            batch = decode_batch(data)
            if batch.events:
                sink.add_events([(decode_event(e.raw, position=e.offset, naive_tz=self.naive_tz), e.raw,
                                  e.received_at) for e in batch.events])
                rows["events"] += len(batch.events)
            if batch.facts:
                sink.add_facts(batch.facts)
                rows["case_facts"] += len(batch.facts)
            if batch.findings:
                sink.add_findings(batch.findings, run_id="live")
                rows["findings"] += len(batch.findings)
            if batch.notes:
                sink.add_notes(batch.notes, run_id="live")
                rows["notes"] += len(batch.notes)
        with ExitStack() as timed:  # one flush writes every table: each is timed (and failed) with it
            for table, n in rows.items():
                timed.enter_context(clickhouse_write(table, n))
            sink.flush()
        return rows

    def close(self) -> None:
        try:
            self.sink.close()
        finally:
            self.wh.close()
