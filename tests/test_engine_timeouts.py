"""Timeout rules, table by table: the dates below are worked out by hand from the 2026 calendar."""

from __future__ import annotations

import random
from datetime import datetime

from rules.engine import decode_state, encode_state
from tests.engine_kit import CaseScript, at, engine, rules_of, run


def test_two_supplements_across_spring_festival_push_the_deadline() -> None:
    # T-PROM5: 5 promised working days. Accepted Tue 02-10. Pauses cover (02-11, 02-12] and
    # (02-13, 02-24] — the latter holds the 02-14 make-up Saturday and 02-24, both working days.
    # Unpaused working days: 02-11 #1, 02-13 #2, 02-25 #3, 02-26 #4, 02-27 #5 -> due end of 02-27.
    c = (CaseScript().accepted_on("2026-02-10 10:00")
         .e("supplement_requested", "2026-02-11 10:00").e("supplement_received", "2026-02-12 15:00")
         .e("supplement_requested", "2026-02-13 09:00").e("supplement_received", "2026-02-24 10:00"))
    found = rules_of(run(c.events, "2026-03-02 12:00"), "TIMEOUT.")
    assert found == {"TIMEOUT.PROMISED_WARNING": "2026-02-27 00:00", "TIMEOUT.PROMISED_OVERDUE": "2026-02-28 00:00"}


def test_completion_inside_the_paused_window_is_on_time() -> None:
    c = (CaseScript().accepted_on("2026-02-10 10:00")
         .e("supplement_requested", "2026-02-11 10:00").e("supplement_received", "2026-02-24 10:00")
         .e("completed", "2026-02-25 11:00"))
    assert rules_of(run(c.events, "2026-04-01 00:00"), "TIMEOUT.") == {}


def test_make_up_sunday_counts_as_a_working_day() -> None:
    # Accepted Fri 09-18; 09-20 (Sunday) is a make-up working day: #1 09-20 … #5 09-24.
    on_time = CaseScript().accepted_on("2026-09-18 10:00").e("completed", "2026-09-24 16:00")
    assert rules_of(run(on_time.events, "2026-10-30 00:00"), "TIMEOUT.") == {
        "TIMEOUT.PROMISED_WARNING": "2026-09-24 00:00"}
    late = CaseScript("C2").accepted_on("2026-09-18 10:00").e("completed", "2026-09-28 10:00")
    assert rules_of(run(late.events, "2026-10-30 00:00"), "TIMEOUT.") == {
        "TIMEOUT.PROMISED_WARNING": "2026-09-24 00:00", "TIMEOUT.PROMISED_OVERDUE": "2026-09-25 00:00"}


def test_extension_extends_promised_and_statutory_limits() -> None:
    # Accepted Mon 11-02, extension of 10 days: promised 15 -> end of 11-23; warning at day 13 (11-19).
    c = (CaseScript().accepted_on("2026-11-02 10:00")
         .e("extension_granted", "2026-11-05 10:00", days=10, approved_by="局长")
         .e("completed", "2026-11-20 10:00"))
    assert rules_of(run(c.events, "2026-12-31 00:00"), "TIMEOUT.") == {"TIMEOUT.PROMISED_WARNING": "2026-11-19 00:00"}
    open_case = (CaseScript("C2").accepted_on("2026-11-02 10:00")
                 .e("extension_granted", "2026-11-05 10:00", days=10, approved_by="局长"))
    found = rules_of(run(open_case.events, "2026-12-31 00:00"), "TIMEOUT.")
    # statutory 20 + 10 = 30 working days -> end of 12-14
    assert found["TIMEOUT.PROMISED_OVERDUE"] == "2026-11-24 00:00"
    assert found["TIMEOUT.STATUTORY_OVERDUE"] == "2026-12-15 00:00"


def test_overdue_fires_on_the_clock_with_no_event_and_late_completion_adds_nothing() -> None:
    eng = engine()
    c = CaseScript().accepted_on("2026-11-02 10:00")
    st = None
    for ev in c.events:
        st = eng.apply(st, ev).state
    assert st is not None
    fired = eng.advance(st, datetime.fromisoformat(at("2026-11-12 09:00"))).findings
    assert [f.rule for f in fired] == ["TIMEOUT.PROMISED_WARNING", "TIMEOUT.PROMISED_OVERDUE"]
    overdue = fired[1]
    assert "应于2026-11-09 24:00前办结" in overdue.message
    late = CaseScript().e("completed", "2026-11-11 10:00").events[0]
    out = eng.apply(st, late)
    assert out.findings == []
    # and the embedded run, which sees the completion in event time, gives the same finding id
    replay = run(c.events + [late], "2026-11-12 09:00")
    assert [f.finding_id for f in replay if f.rule == "TIMEOUT.PROMISED_OVERDUE"] == [overdue.finding_id]


def test_intake_not_decided_in_five_working_days() -> None:
    c = CaseScript().e("submitted", "2026-11-02 10:00")
    assert rules_of(run(c.events, "2026-11-20 00:00"), "TIMEOUT.") == {"TIMEOUT.INTAKE_OVERDUE": "2026-11-10 00:00"}
    told = CaseScript("C2").e("submitted", "2026-11-02 10:00").e("supplement_requested", "2026-11-06 10:00")
    assert rules_of(run(told.events, "2026-11-20 00:00"), "TIMEOUT.") == {}


def test_late_intake_starts_the_clock_on_submission_day() -> None:
    # 第32条: accepted after the 5-day intake limit counts as accepted on the submission day (11-02).
    c = CaseScript().e("submitted", "2026-11-02 10:00").e("accepted", "2026-11-12 10:00")
    found = rules_of(run(c.events, "2026-11-20 00:00"), "TIMEOUT.")
    assert found["TIMEOUT.INTAKE_OVERDUE"] == "2026-11-10 00:00"
    assert found["TIMEOUT.PROMISED_OVERDUE"] == "2026-11-10 00:00"


def test_step_overdue_and_suspension_overrun() -> None:
    # 审查 has a 2-day limit from the completion of 受理 (11-02): due end of 11-04.
    c = (CaseScript().accepted_on("2026-11-02 09:00").e("step_completed", "2026-11-02 09:30", step="受理")
         .e("suspended", "2026-11-03 10:00", procedure="专家评审", planned_days=3))
    found = rules_of(run(c.events, "2026-11-20 00:00"), "TIMEOUT.")
    # the suspension pauses the step clock too, so only the overrun fires: planned 3 days -> end of 11-06
    assert found == {"TIMEOUT.SUSPENSION_OVERRUN": "2026-11-07 00:00"}
    slow = CaseScript("C2").accepted_on("2026-11-02 09:00").e("step_completed", "2026-11-02 09:30", step="受理")
    assert rules_of(run(slow.events, "2026-11-06 00:00"), "TIMEOUT.STEP") == {"TIMEOUT.STEP_OVERDUE": "2026-11-05 00:00"}


def test_completed_case_fires_nothing_afterwards() -> None:
    c = CaseScript().accepted_on("2026-11-02 10:00").e("completed", "2026-11-03 10:00")
    assert rules_of(run(c.events, "2027-03-01 00:00"), "TIMEOUT.") == {}


def test_duplicated_and_shuffled_input_gives_the_same_findings() -> None:
    scripts = [
        CaseScript("A").accepted_on("2026-11-02 10:00").e("step_completed", "2026-11-02 11:00", step="受理")
        .e("fee_paid", "2026-11-03 10:00", fee_code="F-GB", amount=30, channel="window_cash")
        .e("completed", "2026-11-16 10:00").e("rated", "2026-11-16 12:00", level=1),
        CaseScript("B").accepted_on("2026-11-03 10:00").e("supplement_requested", "2026-11-04 10:00")
        .e("supplement_received", "2026-11-10 10:00").e("supplement_requested", "2026-11-11 10:00"),
        CaseScript("C", item="T-SPOT").accepted_on("2026-11-04 10:00").e("completed", "2026-11-05 09:00"),
    ]
    events = [ev for s in scripts for ev in s.events]
    base = {(f.finding_id, f.rule, f.fired_at) for f in run(events, "2026-12-31 00:00")}
    assert len(base) >= 6
    rng = random.Random(4)
    for _ in range(5):
        noisy = events + rng.sample(events, 6)
        rng.shuffle(noisy)
        assert {(f.finding_id, f.rule, f.fired_at) for f in run(noisy, "2026-12-31 00:00")} == base
    # and one engine fed each case's events in a shuffled order, clock advanced only at the end
    eng = engine()
    states: dict = {}
    got = []
    shuffled = list(events)
    rng.shuffle(shuffled)
    for ev in shuffled:
        out = eng.apply(states.get(ev.case_id), ev)
        states[ev.case_id] = out.state
        got += out.findings
    for st in states.values():
        got += eng.advance(st, datetime.fromisoformat(at("2026-12-31 00:00"))).findings
    assert {(f.finding_id, f.rule, f.fired_at) for f in got} == base


def test_state_round_trips_and_stays_small() -> None:
    eng = engine()
    st = None
    for ev in CaseScript().accepted_on("2026-11-02 10:00").e("step_completed", "2026-11-02 11:00", step="受理").events:
        st = eng.apply(st, ev).state
    assert st is not None
    raw = encode_state(st)
    assert decode_state(raw) == st
    assert len(raw) < 600


def test_case_facts_keep_deadlines_after_completion() -> None:
    eng = engine()
    st = None
    for ev in CaseScript().accepted_on("2026-09-18 10:00").e("completed", "2026-09-28 10:00").events:
        st = eng.apply(st, ev).state
    assert st is not None
    facts = eng.facts(st)
    assert facts.status == "completed" and facts.on_time is False
    assert facts.promised_due_at is not None
    assert facts.promised_due_at.isoformat() == "2026-09-24T16:00:00+00:00"  # end of 09-24, China time
    assert facts.statutory_due_at is not None
