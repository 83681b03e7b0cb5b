"""The batching writer between the engine's drivers and the warehouse.

Small inserts are slow in ClickHouse (each one is a part on disk), so the sink buffers and writes a
batch when it holds ``max_rows`` rows or when its oldest row is ``max_seconds`` old, whichever comes
first (a background timer covers the quiet periods when nothing else would trigger a write).

Two threads share the work of a batch: the caller's thread turns Python objects into columns (this
needs the GIL), a writer thread hands them to ClickHouse (chDB releases the GIL), so on two cores the
conversion of one batch overlaps the storing of the previous one. At most two batches wait, which
bounds memory and pushes back on a producer faster than storage.

Everything it writes is idempotent, so the sink can be at-least-once without care: a batch that
failed is kept and written again whole at the next write, and a process killed mid-run is simply run
again on the same input. Within a batch it keeps only the highest version of each case's facts (the
table keeps only the highest anyway) and one copy of each finding and note.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.facts import CaseFacts
from rules.findings import Finding, Note
from warehouse.rows import event_columns, facts_columns, findings_columns, notes_columns, pii_of

_KNOWN_LIMIT = 200_000  # cases whose applicant details are remembered for scrubbing findings


@dataclass
class _Job:
    parts: list[Any]  # prepared batches, in write order
    rows: dict[str, int] = field(default_factory=dict)


class Sink:
    """Batching, idempotent writer: ``add_*`` buffer, ``flush`` stores, ``close`` flushes and stops.

    Thread-safe. A failed write keeps its batch for the next write and raises its error from the next
    ``add_*``, ``flush`` or ``close``. ``flush`` returns only when everything added before it is stored.
    Use it as a context manager or call ``close``: rows still buffered when the process exits are not
    stored (they are when the same input is run again — writes are idempotent).
    """

    def __init__(self, wh: Any, max_rows: int = 50_000, max_seconds: float = 2.0) -> None:
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
        self._known: dict[str, tuple[str, ...]] = {}
        self._oldest: float | None = None
        self._failed: list[_Job] = []
        self._error: BaseException | None = None
        self._closed = False
        self.written = {"events": 0, "case_facts": 0, "findings": 0, "notes": 0, "batches": 0}
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
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
        with self._lock:
            self._raise_pending()
            buf = self._facts
            for f in facts:
                cur = buf.get(f.case_id)
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
        if self.pending() >= self.max_rows:
            self._submit()

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
        while not self._stop.wait(step):
            with self._lock:
                if self._oldest is not None and time.monotonic() - self._oldest >= self.max_seconds:
                    try:
                        self._submit()
                    except Exception as exc:  # noqa: BLE001 - kept and raised to the producer
                        with self._state:
                            self._error = exc

    def _submit(self) -> None:
        """Convert the buffers into a job for the writer; failed jobs go first (writes are idempotent)."""
        with self._state:
            retry, self._failed = self._failed, []
        for job in retry:
            self._jobs.put(job)
        if not self.pending():
            self._oldest = None
            return
        events, facts, findings, notes = self._events, self._facts, self._findings, self._notes
        # If preparing raises (a naive datetime, say), the buffers are untouched and the error surfaces.
        known = self._remember(facts.values())
        wh = self.wh
        parts = [
            wh.prepare("events", event_columns(events)) if events else None,
            wh.prepare("notes", notes_columns(list(notes.values()), known)) if notes else None,
            wh.prepare("case_facts", facts_columns(facts.values())) if facts else None,
            wh.prepare("findings", findings_columns(list(findings.values()), known)) if findings else None,
        ]
        self._events, self._facts, self._findings, self._notes = [], {}, {}, {}
        self._oldest = None
        rows = {"events": len(events), "notes": len(notes), "case_facts": len(facts), "findings": len(findings)}
        self._jobs.put(_Job([p for p in parts if p is not None], rows))

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                for part in job.parts:
                    self.wh.write(part)
                with self._state:
                    for k, v in job.rows.items():
                        self.written[k] += v
                    self.written["batches"] += 1
            except BaseException as exc:  # noqa: BLE001 - the producer sees it at its next call
                with self._state:
                    self._failed.append(job)
                    self._error = exc
            finally:
                self._jobs.task_done()

    def _remember(self, facts: Iterable[CaseFacts]) -> dict[str, tuple[str, ...]]:
        """Applicant details per case, kept for a while so findings of later batches are scrubbed too."""
        known = self._known
        for f in facts:
            pii = pii_of(f)
            if pii:
                known[f.case_id] = pii
        if len(known) > _KNOWN_LIMIT:
            for key in list(known)[: len(known) - _KNOWN_LIMIT // 2]:
                del known[key]
        return known
