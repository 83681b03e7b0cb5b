"""Warehouse benchmark: store simulated events with their case facts and findings into chDB.

``bench_warehouse()`` generates the input first (not timed: that is the engine's and simulator's
work), cut the way a streaming driver hands it over (per chunk of 1,000 lines: the lines, the latest
facts of each case the chunk touched, its findings and notes), then times what the driver pays for
storage: the :class:`warehouse.Sink` calls and the final flush, until every row is stored. The target
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


def _cpu_idle(seconds: float = 2.0) -> float:
    """Share of CPU time the whole machine spent idle over ``seconds`` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except OSError:
        return float("nan")
    return (i1 - i0) / max(t1 - t0, 1)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes, all CPUs)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _wait_until_quiet(max_seconds: float, idle: float = 0.9) -> float:
    """On a shared machine, wait (up to ``max_seconds``) for other work to stop; returns the idle share."""
    deadline = time.monotonic() + max_seconds
    share = _cpu_idle()
    while share < idle and time.monotonic() < deadline:
        share = _cpu_idle()
    return share


def _stored_bytes(wh: Any) -> dict[str, int]:
    rows = wh.query("SELECT table, sum(bytes_on_disk) AS b FROM system.parts "
                    "WHERE database = currentDatabase() AND active GROUP BY table")
    return {r["table"]: int(r["b"]) for r in rows}


def bench_warehouse(n_events: int = 1_000_000, max_rows: int = 100_000, chunk: int = 1000,
                    data_dir: str | None = None, seed: int = 7, chain: bool = False,
                    wait_quiet_s: float = 0.0) -> dict[str, Any]:
    """Store ``n_events`` simulated lines (+ facts, findings, notes) into a fresh chDB directory.

    Returns events/s end to end (sink calls through the last flush), stored bytes per event (all
    tables, as written and after merges) and the row counts read back, which must equal the input's.
    ``chain=True`` also links every line into its case's hash chain (warehouse.chain, the audit
    feature), which the issue's figure does not include. ``wait_quiet_s`` waits up to that long, after
    generating the input, for the machine's CPUs to be 90 % idle (a shared machine: other people's
    test runs make wall-clock figures meaningless); the idle share found is reported.
    """
    from warehouse import Sink, open_warehouse
    from warehouse.reads import counts
    from warehouse.synthetic import chunks, generate

    t0 = time.perf_counter()
    syn = generate(n_events, seed=seed)
    work = chunks(syn.steps, chunk)  # what a driver hands the sink per chunk of lines, ready before timing
    gen_s = time.perf_counter() - t0
    own_dir = data_dir is None
    path = data_dir or tempfile.mkdtemp(prefix="esup-bench-wh-")
    wh = open_warehouse(path)
    try:
        wh.migrate()
        sink = Sink(wh, max_rows=max_rows, max_seconds=0, chain=chain)
        idle_before = _wait_until_quiet(wait_quiet_s) if wait_quiet_s > 0 else _cpu_idle(0.5)
        t0, c0, m0, b0 = time.perf_counter(), time.process_time(), time.thread_time(), _busy_seconds()
        for items, facts, findings, notes in work:
            sink.add_events(items)
            sink.add_facts(facts)
            if findings:
                sink.add_findings(findings)
            if notes:
                sink.add_notes(notes)
        sink.close()
        elapsed, cpu, main = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
        others = _busy_seconds() - b0 - cpu  # CPU seconds other processes took meanwhile
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
            "main_thread_cpu_seconds": round(main, 3),
            # What an otherwise idle machine would allow: the caller's thread is serial, the rest spreads
            # over the cores (an estimate from CPU time, for a loaded machine; not a measurement).
            "cpu_bound_events_per_s": round(syn.lines / max(main, cpu / (os.cpu_count() or 1))),
            "machine_idle_before": round(idle_before, 2),
            "other_processes_cpu_seconds": round(others, 2),
            "events_per_s": round(syn.lines / elapsed),
            "bytes_per_event": round(sum(written.values()) / syn.distinct_lines, 1),
            "bytes_per_event_merged": round(sum(merged.values()) / syn.distinct_lines, 1),
            "events_table_bytes_per_event": round(merged.get("events", 0) / syn.distinct_lines, 1),
            "stored": got,
            "correct": (got["events"] == syn.distinct_lines and got["case_facts"] == syn.cases
                        and got["findings"] == len(syn.finding_ids)),
            "generate_s": round(gen_s, 1),
            "batches": sink.written["batches"],
            "rows_written": dict(sink.written),
            "chain": chain,
            "machine": _machine(),
        }
    finally:
        wh.close()
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)
    return result
