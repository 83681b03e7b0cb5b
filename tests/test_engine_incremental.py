"""The engine recomputes only the deadline families an event can move; this checks that shortcut.

After every event and every clock step, each family's cached earliest pending instant (``state.dues``)
must equal what a full recomputation of that family gives. A trigger that is too narrow would keep a
stale deadline here long before any finding came out wrong, so the check runs on simulated traffic
with every kind of violation injected, in time order and in a shuffled arrival order.
"""

from __future__ import annotations

import heapq
import random
from pathlib import Path

import pytest

from rules import engine as engine_module
from rules.calendar import CalendarError
from rules.engine import Engine
from simulator import write
from streams.embedded import load


def _full_dues(eng: Engine, state) -> list[float | None]:
    ctx = eng._context(state, [])
    dues: list[float | None] = []
    for rule in engine_module._FAMILY_RULES:
        out: list = []
        try:
            rule(ctx, out)
        except CalendarError:
            out = []
        dues.append(engine_module._pending(state, out))
    return dues


def _check(eng: Engine, state, after: str) -> None:
    want = _full_dues(eng, state)
    names = list(engine_module._FAMILIES)
    got = list(state.dues)
    assert got == want, (f"case {state.case_id} after {after}: cached "
                         f"{dict(zip(names, got, strict=True))} != recomputed {dict(zip(names, want, strict=True))}")
    pending = [x for x in want if x is not None]
    assert state.next_due == (min(pending) if pending else None), f"case {state.case_id} after {after}"


@pytest.mark.parametrize("shuffled", [False, True], ids=["time-order", "shuffled"])
def test_cached_deadlines_equal_a_full_recomputation(tmp_path: Path, shuffled: bool) -> None:
    events_path = tmp_path / "events.jsonl"
    write(events_path, tmp_path / "truth.jsonl", cases=1_500, days=30, seed=5)
    with open(events_path, "rb") as fh:
        events, invalid, _ = load(fh)
    assert not invalid
    events.sort(key=lambda e: e.occurred_at)
    if shuffled:  # arrival order: each event up to a few places early or late, duplicates included
        rng = random.Random(9)
        keyed = [(i + rng.uniform(-40, 40), e) for i, e in enumerate(events)]
        keyed += [(i + rng.uniform(0, 60), events[i]) for i in rng.sample(range(len(events)), 300)]
        events = [e for _, e in sorted(keyed, key=lambda x: x[0])]
    eng = Engine.default()
    states: dict = {}
    heap: list[tuple[float, str]] = []
    checked = 0
    for ev in events:
        t = ev.occurred_at.timestamp()
        while heap and heap[0][0] < t:
            due, cid = heapq.heappop(heap)
            st = states[cid]
            if st.next_due != due:
                continue
            eng.advance(st, due)
            _check(eng, st, f"the clock reached {due}")
            if st.next_due is not None:
                heapq.heappush(heap, (st.next_due, cid))
        st = eng.apply(states.get(ev.case_id), ev).state
        states[ev.case_id] = st
        _check(eng, st, f"{ev.event_type} {ev.event_id}")
        checked += 1
        if st.next_due is not None:
            heapq.heappush(heap, (st.next_due, ev.case_id))
    assert checked == len(events)
