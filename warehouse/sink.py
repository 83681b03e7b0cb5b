"""The batching writer between the engine's drivers and the warehouse.

Small inserts are slow in ClickHouse (each one is a part on disk), so the sink buffers and writes a
batch when it holds ``max_rows`` rows or when its oldest row is ``max_seconds`` old, whichever comes
first (a background timer covers the quiet periods when nothing else would trigger a write). The
default of 100,000 rows halves the parts, and the merging, of 50,000 (merges: 1.5 → 0.9 CPU-s a
million lines) for two batches of ~50 MB in memory.

Two threads share the work of a batch: the caller's thread turns Python objects into columns (this
needs the GIL), a writer thread hands them to ClickHouse (chDB releases the GIL), so on two cores the
conversion of one batch overlaps the storing of the previous one. At most two batches wait, which
bounds memory and pushes back on a producer faster than storage.

Everything it writes is idempotent, so the sink can be at-least-once without care: a batch that
failed is kept and written again whole at the next write, and a process killed mid-run is simply run
again on the same input. Within a batch it keeps only the highest version of each case's facts (the
table keeps only the highest anyway) and one copy of each finding and note.

Right after a batch of events is stored, its lines are linked into their cases' hash chains
(``warehouse.chain``: tamper evidence for audits); a line already chained is not chained again.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.facts import CaseFacts
from rules.findings import Finding, Note
from warehouse.chain import ChainWriter
from warehouse.rows import chain_items, event_columns, facts_columns, findings_columns, notes_columns, pii_of

log = logging.getLogger(__name__)
_RECENT_BATCHES = 4  # batches of facts kept to mask applicant details in later findings


@dataclass
class _Job:
    parts: list[Any]  # prepared batches, in write order
    rows: dict[str, int] = field(default_factory=dict)
    retried: bool = False  # failed once and was queued again


@dataclass
class _ChainLinks:
    """A job part: (case_id, event_id, raw) of the events just written, to link into their chains."""

    items: list[tuple[str, str, Any]]


class Sink:
    """Batching, idempotent writer: ``add_*`` buffer, ``flush`` stores, ``close`` flushes and stops.

    Thread-safe. A failed write keeps its batch, which is written again at the next write (or by the
    timer), and its error is raised from the next ``add_*``, ``flush`` or ``close`` unless the retry
    succeeded first. ``flush`` returns only when everything added before it is stored.
    Use it as a context manager or call ``close``: rows still buffered when the process exits are not
    stored (they are when the same input is run again — writes are idempotent).
    """

    def __init__(self, wh: Any, max_rows: int = 100_000, max_seconds: float = 2.0, chain: bool = True) -> None:
        """``chain=False`` skips linking stored lines into their cases' hash chains (warehouse.chain):
        for bulk loads whose chains are built afterwards, or benchmarks of storage alone."""
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.wh = wh
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self._lock = threading.RLock()  # buffers and the decision to write
        self._state = threading.Lock()  # failed jobs, error, counters (shared with the writer)
        self._events: list[tuple[Any, bytes, datetime]] = []
        self._facts: dict[str, CaseFacts] = {}
        self._findings: dict[tuple[str, str], tuple[str, Finding]] = {}
        self._notes: dict[tuple[str, str, str, str], tuple[str, Note]] = {}
        self._recent: deque[dict[str, CaseFacts]] = deque(maxlen=_RECENT_BATCHES)
        self._oldest: float | None = None
        self._failed: list[_Job] = []
        self._error: BaseException | None = None
        self._closed = False
        self.written = {"events": 0, "case_facts": 0, "findings": 0, "notes": 0, "batches": 0}
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
        self._chain = ChainWriter(wh) if chain else None
        self._writer = threading.Thread(target=self._write_loop, name="esup-sink-writer", daemon=True)
        self._writer.start()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if max_seconds and max_seconds > 0:
            self._timer = threading.Thread(target=self._tick, name="esup-sink-timer", daemon=True)
            self._timer.start()

    # ------------------------------------------------------------------------------------ adding
    def add_events(self, items: Iterable[tuple[Any, bytes, datetime]]) -> None:
        """Buffer (event or InvalidEvent, raw bytes as received, received_at) triples."""
        with self._lock:
            self._raise_pending()
            self._events.extend(items)
            self._added()

    def add_facts(self, facts: Iterable[CaseFacts]) -> None:
        """Buffer case facts; per case only the highest version is kept (the table keeps no other)."""
        with self._lock:
            self._raise_pending()
            buf = self._facts
            get = buf.get
            for f in facts:  # a plain loop measured faster than any vectorized variant (sorting costs more)
                cur = get(f.case_id)
                if cur is None or f.version >= cur.version:
                    buf[f.case_id] = f
            self._added()

    def add_findings(self, findings: Iterable[Finding], run_id: str = "live") -> None:
        """Buffer findings of one run: 'live' for live and embedded runs, a replay's own run id otherwise."""
        if not run_id:
            raise ValueError("run_id must not be empty")
        with self._lock:
            self._raise_pending()
            for f in findings:
                self._findings[(run_id, f.finding_id)] = (run_id, f)
            self._added()

    def add_notes(self, notes: Iterable[Note], run_id: str = "live") -> None:
        if not run_id:
            raise ValueError("run_id must not be empty")
        with self._lock:
            self._raise_pending()
            for n in notes:
                self._notes[(run_id, n.case_id, n.event_id, n.kind)] = (run_id, n)
            self._added()

    def pending(self) -> int:
        """Rows buffered and not yet handed to the writer."""
        return len(self._events) + len(self._facts) + len(self._findings) + len(self._notes)

    def _added(self) -> None:
        if self._closed:
            raise RuntimeError("the sink is closed")
        if self._oldest is None:
            self._oldest = time.monotonic()
        full = {name for name, n in (("events", len(self._events)), ("case_facts", len(self._facts)),
                                     ("findings", len(self._findings) + len(self._notes))) if n >= self.max_rows}
        if full:
            self._submit(full)

    # ----------------------------------------------------------------------------------- writing
    def flush(self) -> None:
        """Store everything added so far; returns when it is stored, raises if it could not be."""
        with self._lock:
            self._submit()
            self._jobs.join()
            self._raise_pending()

    def close(self) -> None:
        """Flush, then stop the threads. The warehouse stays open: it belongs to the caller."""
        if self._closed:
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        try:
            self.flush()
        finally:
            self._closed = True
            self._jobs.put(None)
            self._writer.join()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_pending(self) -> None:
        with self._state:
            err, self._error = self._error, None
        if err is not None:
            raise err

    def _tick(self) -> None:
        step = min(0.25, self.max_seconds / 4)
        last_retry = time.monotonic()
        while not self._stop.wait(step):
            with self._lock:
                due = self._oldest is not None and time.monotonic() - self._oldest >= self.max_seconds
                with self._state:
                    # a failed batch is tried again every max_seconds, even when nothing new arrives
                    retry = bool(self._failed) and time.monotonic() - last_retry >= self.max_seconds
                if due or retry:
                    last_retry = time.monotonic()
                    try:
                        self._submit()
                    except Exception as exc:  # noqa: BLE001 - kept and raised to the producer
                        with self._state:
                            self._error = exc

    def _submit(self, which: set[str] | None = None) -> None:
        """Convert buffers into a job for the writer (all of them, or those in ``which``).

        A full buffer is written on its own: facts wait for their own batch, so one batch of facts
        spans more events and keeps fewer intermediate versions of each case (a third fewer rows than
        writing them with every batch of events). Failed jobs go first; writes are idempotent.
        """
        with self._state:
            retry, self._failed = self._failed, []
        for job in retry:
            self._jobs.put(job)
        take = which or {"events", "case_facts", "findings"}
        events = self._events if "events" in take else []
        facts = self._facts if "case_facts" in take else {}
        findings = self._findings if "findings" in take else {}
        notes = self._notes if "findings" in take else {}
        if not (events or facts or findings or notes):
            if not self.pending():
                self._oldest = None
            return
        # If preparing raises (a naive datetime, say), the buffers are untouched and the error surfaces.
        # The cyclic GC is paused meanwhile: conversion makes millions of short-lived lists and tuples
        # (no cycles), and each full collection would walk the driver's whole heap — a third of the
        # conversion time in a process that holds a large replay in memory.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            wh = self.wh
            known = self._personal_data({f.case_id for _, f in findings.values()} | {n.case_id for _, n in notes.values()})
            parts = [
                *(self._prepare_events(events) if events else ()),
                _ChainLinks(chain_items(events)) if events and self._chain is not None else None,
                wh.prepare("notes", notes_columns(list(notes.values()), known)) if notes else None,
                self._prepare_facts(list(facts.values())) if facts else None,
                wh.prepare("findings", findings_columns(list(findings.values()), known)) if findings else None,
            ]
            if facts:
                self._recent.appendleft(facts)
        finally:
            if gc_was_enabled:
                gc.enable()
        if events:
            self._events = []
        if facts:
            self._facts = {}
        if findings or notes:
            self._findings, self._notes = {}, {}
        if not self.pending():
            self._oldest = None
        rows = {"events": len(events), "notes": len(notes), "case_facts": len(facts), "findings": len(findings)}
        self._jobs.put(_Job([p for p in parts if p is not None], rows))

    def _prepare_events(self, events: list[tuple[Any, bytes, datetime]]) -> list[Any]:
        fast = getattr(self.wh, "prepare_events", None)
        if fast is not None:
            return [p for p in fast(events) if p is not None]
        prepared = self.wh.prepare("events", event_columns(events))
        return [prepared] if prepared is not None else []

    def _prepare_facts(self, facts: list[CaseFacts]) -> Any:
        fast = getattr(self.wh, "prepare_facts", None)
        return fast(facts) if fast is not None else self.wh.prepare("case_facts", facts_columns(facts))

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                for part in job.parts:
                    if isinstance(part, _ChainLinks):
                        if self._chain is not None:
                            self._chain.append(part.items)
                    else:
                        self.wh.write(part)
                with self._state:
                    for k, v in job.rows.items():
                        self.written[k] += v
                    self.written["batches"] += 1
                    if job.retried and not self._failed:
                        self._error = None  # the failure was transient and nothing is left unwritten
            except BaseException as exc:  # noqa: BLE001 - the producer sees it at its next call
                log.warning("warehouse write failed, the batch is kept and written again: %s", exc)
                with self._state:
                    job.retried = True
                    self._failed.append(job)
                    self._error = exc
            finally:
                self._jobs.task_done()

    def _personal_data(self, cases: set[str]) -> dict[str, tuple[str, ...]]:
        """What to mask in the free text of these cases: their applicant details from the facts buffered
        or written in the last few batches (a finding usually follows its case's latest facts closely;
        for older cases the pattern masks for ID and phone numbers still apply)."""
        out = {}
        sources = (self._facts, *self._recent)
        for case_id in cases:
            for src in sources:
                f = src.get(case_id)
                if f is not None:
                    pii = pii_of(f)
                    if pii:
                        out[case_id] = pii
                    break
        return out
