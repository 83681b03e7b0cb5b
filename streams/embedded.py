"""The embedded driver: the engine in-process, events from a file or stdin, no broker.

Each case's events are applied in event-time order, and its clock runs between them, so a case with no
further events still has its deadlines fire, at their own instants. Cases are taken one after another
(they are independent); the findings come out in the order one global clock over all cases gives them
(``tests/test_embedded_order.py`` holds the driver to that reference).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
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
               progress: Callable[[int], None] | None = None, times: list[float] | None = None) -> RunResult:
    """Apply ``events`` in event-time order, then let the clock run to ``until`` (default: the last event).

    ``times``: each event's ``occurred_at`` as epoch seconds, when the caller has worked them out already.
    ``result.findings`` and ``result.notes`` are in global event-time order; ``on_findings`` and
    ``on_notes`` get them as each case produces them (cases are run one after another), which suits
    their users — a sink, metrics — that do not depend on order.

    Python's cyclic garbage collector is paused for the run: case states hold no reference cycles, and
    with a million live objects its repeated full scans made the run five times slower.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        if times is None:
            times = [instant(ev.occurred_at) for ev in events]
        elif len(times) != len(events):
            raise ValueError(f"run_events: {len(times)} times for {len(events)} events")
        return _run(engine, events, times, until, on_findings, on_notes, progress)
    finally:
        if paused:
            gc.enable()


def _run(engine: Engine, events: list[AnyEvent], times: list[float], until: datetime | None,
         on_findings: FindingSink | None,
         on_notes: Callable[[list[Note]], None] | None, progress: Callable[[int], None] | None) -> RunResult:
    """Case by case: each case's events in event-time order, its clock run between them.

    Cases are independent — a case's findings depend only on its own events and clock — so one case can
    be taken to its end before the next: its state stays in the CPU cache instead of being fetched back
    from memory for every event (100,000 open cases are ~200 MB), and no index of every case's next
    deadline is needed. Each case sees exactly the clock a run in global event-time order gives it: a
    deadline fires before the first event (of any case) later than it, or at the end when it is due by
    ``until``. The findings and notes are then put back in the order that global run emits them.
    """
    result = RunResult(valid=len(events))
    order = sorted(range(len(events)), key=times.__getitem__)  # stable: ties keep input order
    last = events[order[-1]].occurred_at if order else None
    end = until or last
    end_t = instant(end) if end is not None else None
    last_t = times[order[-1]] if order else None

    # Each case's events (their indexes) in event-time order, cases in order of their first event.
    by_case: dict[str, list[int]] = {}
    get = by_case.get
    for i in order:
        cid = events[i].case_id
        mine = get(cid)
        if mine is None:
            by_case[cid] = [i]
        else:
            mine.append(i)

    # What each step emitted, keyed by where a run in global event-time order emits it: an event's outcome
    # by (its time, 1, its index) — the global order itself; a deadline fired at D by (D, 2, 0, case), i.e.
    # after every event up to D and before any later one, cases of one instant in case order.
    emitted: list[tuple[tuple[float, int, int, str], list[Finding], list[Note]]] = []

    def emit(key: tuple[float, int, int, str], findings: list[Finding], notes: list[Note]) -> None:
        emitted.append((key, findings, notes))
        if findings and on_findings:
            on_findings(findings)
        if notes and on_notes:
            on_notes(notes)

    def fire(st: CaseState, cid: str, due: float) -> None:
        out = engine.advance(st, due)
        if out.findings or out.notes:
            emit((due, 2, 0, cid), out.findings, out.notes)

    states = result.states
    apply = engine.apply
    done = 0
    for cid, mine in by_case.items():
        st: CaseState | None = None
        for i in mine:
            t = times[i]
            if st is not None:
                due = st.next_due
                while due is not None and due < t:  # the deadlines a global run fires before this event
                    fire(st, cid, due)
                    due = st.next_due
            out = apply(st, events[i], t)
            st = out.state
            if out.findings or out.notes:
                emit((t, 1, i, ""), out.findings, out.notes)
            done += 1
            if progress and done % 10000 == 0:
                progress(done)
        assert st is not None
        states[cid] = st
        # After the case's last event: what a later event of another case, or the end, lets fire.
        due = st.next_due
        while due is not None and (due < last_t or (end_t is not None and due <= end_t)):  # type: ignore[operator]
            fire(st, cid, due)
            due = st.next_due
        if end_t is not None and st.now < end_t:  # the clock reaches `until` (no pending deadline)
            st.now = end_t
    emitted.sort(key=itemgetter(0))  # every key is distinct
    for _key, findings, notes in emitted:
        result.findings.extend(findings)
        result.notes.extend(notes)
    result.until = end
    result.cases = len(states)
    return result
