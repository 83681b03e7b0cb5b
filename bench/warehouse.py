"""Warehouse benchmark: store simulated events with their case facts and findings into chDB.

``bench_warehouse()`` generates the input first (not timed: that is the engine's and simulator's
work), then times what the embedded driver pays for storage: handing Python objects to a
:class:`warehouse.Sink` in chunks of 1,000 events and flushing, until every row is stored. The target
from the issue is 200,000 events a second end to end for 1,000,000 events.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from typing import Any


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _stored_bytes(wh: Any) -> dict[str, int]:
    rows = wh.query("SELECT table, sum(bytes_on_disk) AS b FROM system.parts "
                    "WHERE database = currentDatabase() AND active GROUP BY table")
    return {r["table"]: int(r["b"]) for r in rows}


def bench_warehouse(n_events: int = 1_000_000, max_rows: int = 50_000, chunk: int = 1000,
                    data_dir: str | None = None, seed: int = 7) -> dict[str, Any]:
    """Store ``n_events`` simulated lines (+ facts, findings, notes) into a fresh chDB directory.

    Returns events/s end to end (sink calls through the last flush), stored bytes per event (all
    tables, as written and after merges) and the row counts read back, which must equal the input's.
    """
    from warehouse import Sink, open_warehouse
    from warehouse.reads import counts
    from warehouse.synthetic import feed, generate

    t0 = time.perf_counter()
    syn = generate(n_events, seed=seed)
    gen_s = time.perf_counter() - t0
    own_dir = data_dir is None
    path = data_dir or tempfile.mkdtemp(prefix="esup-bench-wh-")
    wh = open_warehouse(path)
    try:
        wh.migrate()
        sink = Sink(wh, max_rows=max_rows, max_seconds=0)
        t0, c0 = time.perf_counter(), time.process_time()
        feed(sink, syn.steps, chunk=chunk)
        sink.close()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        written = _stored_bytes(wh)
        got = counts(wh)
        for table in ("events", "case_facts", "findings", "notes"):
            wh.execute(f"OPTIMIZE TABLE {table} FINAL")
        merged = _stored_bytes(wh)
        result = {
            "events": syn.lines,
            "distinct_lines": syn.distinct_lines,
            "case_facts_in": sum(1 for s in syn.steps if s.facts is not None),
            "cases": syn.cases,
            "findings": len(syn.finding_ids),
            "seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu, 3),  # all threads, chDB's included: wall time on a busy machine lies
            "events_per_s": round(syn.lines / elapsed),
            "bytes_per_event": round(sum(written.values()) / syn.distinct_lines, 1),
            "bytes_per_event_merged": round(sum(merged.values()) / syn.distinct_lines, 1),
            "events_table_bytes_per_event": round(merged.get("events", 0) / syn.distinct_lines, 1),
            "stored": got,
            "correct": (got["events"] == syn.distinct_lines and got["case_facts"] == syn.cases
                        and got["findings"] == len(syn.finding_ids)),
            "generate_s": round(gen_s, 1),
            "batches": sink.written["batches"],
            "machine": _machine(),
        }
    finally:
        wh.close()
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)
    return result
