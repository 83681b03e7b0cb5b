"""The embedded driver takes one case at a time; it must give what one global clock gives.

The reference here is the plain way to drive the engine: every event in event-time order, and before
each one the deadline of every case that falls earlier fires, in (instant, case) order; at the end,
whatever is due by ``until``. The driver must produce the same findings and notes, in the same order,
and leave every case's state where the reference leaves it — on simulated traffic (every rule fires)
with ``until`` at the last event, mid-month and after it, and on input given in a shuffled order.
"""

from __future__ import annotations

import heapq
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rules.clock import instant
from rules.engine import Engine
from rules.findings import Finding, Note
from rules.state import CaseState
from schemas.events import AnyEvent
from simulator import write
from streams.embedded import load, run_events
from tests.engine_kit import CaseScript, engine


def global_clock_run(engine: Engine, events: list[AnyEvent], until: datetime | None,
                     ) -> tuple[list[Finding], list[Note], dict[str, CaseState]]:
    times = [instant(ev.occurred_at) for ev in events]
    order = sorted(range(len(events)), key=times.__getitem__)
    states: dict[str, CaseState] = {}
    heap: list[tuple[float, str]] = []
    findings: list[Finding] = []
    notes: list[Note] = []

    def tick(upto: float, strict: bool) -> None:
        while heap and (heap[0][0] < upto or (not strict and heap[0][0] == upto)):
            due, cid = heapq.heappop(heap)
            st = states[cid]
            if st.next_due != due:
                continue  # the case's deadline moved since
            out = engine.advance(st, due)
            findings.extend(out.findings)
            notes.extend(out.notes)
            if st.next_due is not None:
                heapq.heappush(heap, (st.next_due, cid))

    for i in order:
        ev, t = events[i], times[i]
        tick(t, strict=True)
        out = engine.apply(states.get(ev.case_id), ev, t)
        states[ev.case_id] = out.state
        findings.extend(out.findings)
        notes.extend(out.notes)
        if out.state.next_due is not None:
            heapq.heappush(heap, (out.state.next_due, ev.case_id))
    end = until or (events[order[-1]].occurred_at if order else None)
    if end is not None:
        tick(end.timestamp(), strict=False)
        for st in states.values():
            st.now = max(st.now, end.timestamp())
    return findings, notes, states


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> list[AnyEvent]:
    path: Path = tmp_path_factory.mktemp("traffic") / "events.jsonl"
    write(path, None, cases=3_000, days=30, seed=5)
    with open(path, "rb") as fh:
        valid, invalid, _ = load(fh)
    assert not invalid
    return valid


def _same(events: list[AnyEvent], until: datetime | None) -> int:
    expected_f, expected_n, expected_states = global_clock_run(Engine.default(), events, until)
    got = run_events(Engine.default(), events, until=until)
    assert [f.finding_id for f in got.findings] == [f.finding_id for f in expected_f]
    assert got.findings == expected_f  # message, instant, officer, everything
    assert [(n.kind, n.event_id) for n in got.notes] == [(n.kind, n.event_id) for n in expected_n]
    assert list(got.states) == list(expected_states)  # cases in order of their first event
    for cid, st in expected_states.items():
        mine = got.states[cid]
        assert (mine.now, mine.next_due, mine.fired) == (st.now, st.next_due, st.fired), cid
    return len(expected_f)


@pytest.mark.parametrize("until", ["last event", "mid-month", "45 days after"])
def test_case_by_case_equals_one_global_clock(traffic: list[AnyEvent], until: str) -> None:
    times = sorted(ev.occurred_at for ev in traffic)
    # mid-month: cases whose last event came earlier still have deadlines fall before later events of other
    # cases, and those fire although they are past ``until``
    at = {"last event": None, "mid-month": times[len(times) // 2],
          "45 days after": times[-1] + timedelta(days=45)}[until]
    fired = _same(traffic, at)
    rules = {f.rule for f in run_events(Engine.default(), traffic, until=at).findings}
    assert fired > 100 and len(rules) >= 20  # the comparison covers most rules, deadlines and events alike


def test_shuffled_input_same_as_global_clock(traffic: list[AnyEvent]) -> None:
    shuffled = list(traffic)
    random.Random(8).shuffle(shuffled)
    assert _same(shuffled, None) > 100


def test_a_deadline_at_the_instant_of_a_later_listed_event_waits_for_it() -> None:
    """Decided at 11:00 with no acceptance yet, the acceptance also stamped 11:00 and listed after: the
    NOT_ACCEPTED check is due at 11:00 and must not fire before the acceptance of that same instant."""
    c = (CaseScript("C1").e("submitted", "2026-02-10 10:00")
         .e("decided", "2026-02-10 11:00", outcome="approved").e("accepted", "2026-02-10 11:00"))
    other = CaseScript("C2").e("submitted", "2026-02-10 10:30").e("accepted", "2026-02-11 09:00")
    events = c.events + other.events
    until = datetime.fromisoformat("2026-03-31T00:00+08:00")
    got = run_events(engine(), events, until=until)
    expected, _, _ = global_clock_run(engine(), events, until)
    assert "PROCEDURE.NOT_ACCEPTED" not in {f.rule for f in got.findings}
    assert got.findings == expected
