"""The process clock jumping (an NTP step, an operator setting the date) neither fires nor holds a deadline.

The live ticker's ``now`` is the wall clock read once at start and carried forward by the monotonic
clock (``streams.clock.parse_clock``). These tests drive the live driver's own Supervisor — the engine
over a state table, the per-partition deadline heap and partition clocks — with ``time.time`` and
``time.monotonic`` replaced by a controllable pair, and check that a step of the wall clock in either
direction changes nothing, while real elapsed time fires the deadline once, at its own instant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from schemas.events import CHINA_TZ
from streams import clock as clock_module
from streams.clock import PartitionClocks, parse_clock
from streams.supervise import InRecord, Supervisor
from tests.engine_kit import engine

DAY = 86400.0


@dataclass
class FakeTime:
    """``time.time`` and ``time.monotonic`` of a machine whose wall clock can be stepped."""

    wall: float
    mono: float = 1000.0

    def elapse(self, seconds: float) -> None:  # real time passes: both clocks move
        self.wall += seconds
        self.mono += seconds

    def step(self, seconds: float) -> None:  # NTP step: only the wall clock moves
        self.wall += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    ft = FakeTime(wall=datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ).timestamp())
    monkeypatch.setattr(clock_module.time, "time", lambda: ft.wall)
    monkeypatch.setattr(clock_module.time, "monotonic", lambda: ft.mono)
    yield ft


def _case_records() -> list[InRecord]:
    """One promised case (T-PROM5: 5 working days) accepted Monday 2026-03-02 09:00 and then quiet."""
    out = []
    for i, typ in enumerate(("submitted", "accepted")):
        doc = {"event_id": f"C1-{i}", "event_type": typ, "case_id": "C1", "occurred_at": "2026-03-02T09:00:00+08:00",
               "source": "test", "item_code": "T-PROM5", "department": "自然资源和规划局", "window": "规划窗口",
               "region_code": "610113"}
        out.append(InRecord(b"C1", json.dumps(doc, ensure_ascii=False).encode(), 0, i, 0))
    return out


def _supervisor(now) -> Supervisor:  # type: ignore[no-untyped-def]
    sup = Supervisor(engine(), {}, owned=lambda: {0}, clocks=PartitionClocks(now))
    sup.assign([0])
    sup.start_reading(0, 0)
    eff = sup.apply(_case_records())
    assert eff.events == 2 and not eff.findings
    return sup


def _tick(sup: Supervisor) -> list[str]:
    eff = sup.advance(lambda p: 2)  # caught up: the partition's clock is the ticker's now
    return [f.rule for f in eff.findings]


def test_anchored_clock_ignores_steps_and_follows_elapsed_time(fake_time: FakeTime) -> None:
    now, ahead = parse_clock("wall"), parse_clock("wall+86400")
    start = now()
    assert start == fake_time.wall
    fake_time.step(+30 * DAY)
    assert now() == start
    fake_time.step(-60 * DAY)
    assert now() == start
    fake_time.elapse(5)
    assert now() == start + 5
    fake_time.step(+7 * DAY)
    assert ahead() == now() + DAY


def test_a_forward_step_does_not_fire_deadlines_early(fake_time: FakeTime) -> None:
    now = parse_clock("wall")
    sup = _supervisor(now)
    deadline = sup.next_deadline()
    assert deadline is not None and deadline > fake_time.wall
    fake_time.step(+40 * DAY)  # every deadline of the case is now "past" on the wall clock
    assert _tick(sup) == []
    assert sup.next_deadline() == deadline
    # Real time reaching the first deadline fires it, once, at its own instant.
    fake_time.elapse(deadline - now())
    fired = sup.advance(lambda p: 2)
    assert [f.fired_at.timestamp() for f in fired.findings] == [deadline]
    assert _tick(sup) == []


def test_a_backward_step_does_not_hold_deadlines(fake_time: FakeTime) -> None:
    now = parse_clock("wall")
    sup = _supervisor(now)
    deadline = sup.next_deadline()
    assert deadline is not None
    fake_time.elapse(deadline - now() - 1)
    assert _tick(sup) == []  # one second early: nothing
    fake_time.step(-40 * DAY)  # the wall clock jumps back before the case was even accepted
    fake_time.elapse(2)  # ... and real time passes the deadline
    fired = sup.advance(lambda p: 2)
    assert [f.fired_at.timestamp() for f in fired.findings] == [deadline]
    assert _tick(sup) == []


def test_without_the_anchor_a_step_would_have_fired_them(fake_time: FakeTime) -> None:
    """The control: the same step, read straight from the wall clock, fires the deadlines at once."""
    sup = _supervisor(lambda: fake_time.wall)
    fake_time.step(+40 * DAY)
    assert _tick(sup), "a wall-clock ticker fires on a step; the anchored one must not (tests above)"
