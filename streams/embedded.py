"""The embedded driver: the engine in-process, events from a file or stdin, no broker.

Events are applied in event-time order. An index of each case's next deadline plays the part of the
live ticker, so a case with no further events still has its deadlines fire, at their own instants,
in the same global order a live run would show them.
"""

from __future__ import annotations

import gc
import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from rules.clock import instant
from rules.engine import Engine
from rules.findings import Finding, Note
from rules.state import CaseState
from schemas.events import AnyEvent, InvalidEvent, decode_event, read_events


@dataclass
class RunResult:
    """What a run saw and concluded; every input line is accounted for in ``lines``."""

    lines: int = 0
    valid: int = 0
    invalid: list[InvalidEvent] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    cases: int = 0
    until: datetime | None = None
    states: dict[str, CaseState] = field(default_factory=dict)

    def by_rule(self) -> Counter[tuple[str, str]]:
        return Counter((f.rule, f.severity) for f in self.findings)

    def notes_by_kind(self) -> Counter[str]:
        return Counter(n.kind for n in self.notes)


FindingSink = Callable[[list[Finding]], None]


def load(source: BinaryIO | Iterable[bytes], naive_tz=None, raws: list[bytes] | None = None,
         ) -> tuple[list[AnyEvent], list[InvalidEvent], int]:
    """Decode every line; invalid ones are kept with their line number and reason.

    With ``raws``, the bytes of each valid event's line are appended to it (same order as the valid
    events), so a caller that stores what it received can store it exactly as received.
    """
    valid: list[AnyEvent] = []
    invalid: list[InvalidEvent] = []
    n = 0
    if raws is None:
        items = read_events(source, naive_tz=naive_tz)
        for item in items:
            n += 1
            if isinstance(item, InvalidEvent):
                invalid.append(item)
            else:
                valid.append(item)
        return valid, invalid, n
    for lineno, line in enumerate(source, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        n += 1
        item = decode_event(stripped, position=lineno, naive_tz=naive_tz)
        if isinstance(item, InvalidEvent):
            invalid.append(item)
        else:
            valid.append(item)
            raws.append(stripped)
    return valid, invalid, n


def run_events(engine: Engine, events: list[AnyEvent], until: datetime | None = None,
               on_findings: FindingSink | None = None, on_notes: Callable[[list[Note]], None] | None = None,
               progress: Callable[[int], None] | None = None) -> RunResult:
    """Apply ``events`` in event-time order, then let the clock run to ``until`` (default: the last event).

    Python's cyclic garbage collector is paused for the run: case states hold no reference cycles, and
    with a million live objects its repeated full scans made the run five times slower.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _run(engine, events, until, on_findings, on_notes, progress)
    finally:
        if paused:
            gc.enable()


def _run(engine: Engine, events: list[AnyEvent], until: datetime | None, on_findings: FindingSink | None,
         on_notes: Callable[[list[Note]], None] | None, progress: Callable[[int], None] | None) -> RunResult:
    result = RunResult(valid=len(events))
    times = [instant(ev.occurred_at) for ev in events]
    order = sorted(range(len(events)), key=times.__getitem__)  # stable: ties keep input order
    states = result.states
    # The deadline index: the distinct instants some case waits for, as a heap, and the cases waiting for
    # each. Deadlines fall mostly on a few instants (24:00 of a working day), so the heap stays a few hundred
    # entries long where a heap of (instant, case) grew to one entry per case, and each wake-up paid its depth.
    instants: list[float] = []
    waiting: dict[float, list[str]] = {}  # instant -> cases (an entry goes stale when the case's deadline moves)

    def emit(findings: list[Finding], notes: list[Note]) -> None:
        if findings:
            result.findings.extend(findings)
            if on_findings:
                on_findings(findings)
        if notes:
            result.notes.extend(notes)
            if on_notes:
                on_notes(notes)

    def wake(due: float, cid: str) -> None:
        cases = waiting.get(due)
        if cases is None:
            waiting[due] = [cid]
            heapq.heappush(instants, due)
        else:
            cases.append(cid)

    def tick(upto: float, strict: bool) -> None:
        while instants and (instants[0] < upto or (not strict and instants[0] == upto)):
            due = heapq.heappop(instants)
            for cid in sorted(set(waiting.pop(due))):  # cases of one instant in case order, every run alike
                st = states[cid]
                if st.next_due != due:
                    continue  # stale entry: the case's deadline moved since it was indexed
                out = engine.advance(st, due)
                emit(out.findings, out.notes)
                if st.next_due is not None:
                    wake(st.next_due, cid)

    apply, known, push = engine.apply, states.get, heapq.heappush  # the loop runs once per event
    for n, i in enumerate(order):
        ev = events[i]
        t = times[i]
        if instants and instants[0] < t:
            tick(t, strict=True)
        cid = ev.case_id
        prev = known(cid)
        due_before = prev.next_due if prev is not None else None
        out = apply(prev, ev, t)
        st = out.state
        if prev is None:
            states[cid] = st
        if out.findings or out.notes:
            emit(out.findings, out.notes)
        due = st.next_due
        if due is not None and due != due_before:
            cases = waiting.get(due)  # wake(), inlined
            if cases is None:
                waiting[due] = [cid]
                push(instants, due)
            else:
                cases.append(cid)
        if progress and n % 10000 == 0:
            progress(n)
    last = events[order[-1]].occurred_at if order else None
    end = until or last
    if end is not None:
        tick(end.timestamp(), strict=False)
        for st in states.values():  # cases whose clock must still reach `until` (no pending deadline)
            if st.now < end.timestamp():
                st.now = end.timestamp()
    result.until = end
    result.cases = len(states)
    return result
