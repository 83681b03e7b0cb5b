"""Bad input, tried hard: nothing crashes, every rejected line has a reason, the engine keeps its invariants.

Hypothesis generates malformed JSON, wrong types, huge and control-character strings, impossible and
far-away dates, foreign offsets, unknown types and item codes, and every event type in every order.
The number of inputs tried is printed (run with -s) and recorded in the README.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.engine import Engine, decode_state, encode_state
from rules.registry import RULES
from schemas.events import EVENT_TYPES, MAX_EVENT_BYTES, InvalidEvent, decode_event
from streams.embedded import run_events

TRIED = {"parser": 0, "engine_cases": 0}
ENGINE = Engine.default()
ITEMS = [i.code for i in ENGINE.catalogs.latest.items][:12] + ["NO-SUCH-ITEM"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                              max_size=4),
                           max_leaves=12)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    TRIED["parser"] += 1
    out = decode_event(raw, position=1)
    if isinstance(out, InvalidEvent):
        assert out.error and out.describe()


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.sampled_from(["event_id", "event_type", "case_id", "occurred_at", "source", "amount",
                                        "level", "channel", "fee_code", "step", "days", "recorded_at",
                                        "schema_version", "region_code"]), json_values, max_size=10))
def test_wrong_types_are_rejected_with_the_field_named(doc: dict) -> None:
    TRIED["parser"] += 1
    out = decode_event(json.dumps(doc))
    if isinstance(out, InvalidEvent):
        assert out.error.startswith(("schema:", "malformed JSON:"))


def test_size_limit_is_enforced_with_a_clear_error() -> None:
    big = json.dumps({"event_id": "x", "event_type": "rated", "case_id": "c", "source": "s", "level": 5,
                      "occurred_at": "2026-11-02T10:00:00+08:00", "comment": "差" * MAX_EVENT_BYTES})
    out = decode_event(big)
    assert isinstance(out, InvalidEvent) and "limit" in out.error


offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.builds(lambda base, mins, tz: (base + timedelta(minutes=mins)).astimezone(tz),
                     st.sampled_from([datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 9, 18, tzinfo=UTC),
                                      datetime(1999, 1, 1, tzinfo=UTC), datetime(2031, 6, 1, tzinfo=UTC)]),
                     st.integers(min_value=0, max_value=60 * 24 * 90), offsets)


def _payload(typ: str, draw_amount: int, draw_small: int) -> dict:
    extra = {
        "submitted": {"region_code": "610113"}, "accepted": {},
        "step_completed": {"step": ["受理", "审查", "审核", "批准", "决定", "奇怪的环节"][draw_small % 6]},
        "suspended": {"procedure": "专家评审", "planned_days": draw_small % 12},
        "extension_granted": {"days": 1 + draw_small % 15, "approved_by": "局长"},
        "fee_assessed": {"fee_code": ["F01", "X"][draw_small % 2], "amount": draw_amount},
        "fee_paid": {"fee_code": "F01", "amount": draw_amount,
                     "channel": ["bank", "online", "window_cash"][draw_small % 3]},
        "fee_waived": {"fee_code": "F01", "amount": draw_amount},
        "fee_refunded": {"amount": draw_amount},
        "decided": {"outcome": ["approved", "denied"][draw_small % 2]},
        "rated": {"level": 1 + draw_small % 5},
        "complaint_filed": {"complaint_id": f"T{draw_small % 2}"},
        "complaint_resolved": {"complaint_id": f"T{draw_small % 3}"},
    }
    return extra.get(typ, {})


event_docs = st.builds(
    lambda typ, case, when, rec_delay, officer, amount, small, item, eid: {
        "event_id": f"e{eid}", "event_type": typ, "case_id": f"c{case}", "occurred_at": when.isoformat(),
        "recorded_at": (when + timedelta(hours=rec_delay)).isoformat(), "source": "fuzz",
        "officer_id": f"o{officer}", "item_code": item, **_payload(typ, amount, small)},
    st.sampled_from(sorted(EVENT_TYPES)), st.integers(0, 2), instants, st.integers(0, 200), st.integers(0, 2),
    st.integers(0, 2000), st.integers(0, 100), st.sampled_from(ITEMS), st.integers(0, 40))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_docs, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_engine_keeps_its_invariants_on_any_sequence(docs: list[dict], rnd) -> None:
    TRIED["engine_cases"] += 1
    events = []
    for n, doc in enumerate(docs):
        doc["event_id"] = f"e{n}"  # unique ids: contradictory repeats of one id are a separate test
        # one item per case: an intake that changes the item after findings fired cannot retract them,
        # so arrival order matters there by nature (tested on its own below)
        doc["item_code"] = ITEMS[int(doc["case_id"][1:]) * 5 % len(ITEMS)]
        ev = decode_event(json.dumps(doc))
        if not isinstance(ev, InvalidEvent):
            events.append(ev)
    if not events:
        return
    until = max(e.occurred_at for e in events) + timedelta(days=400)
    first = run_events(ENGINE, events, until=until)
    ids = [f.finding_id for f in first.findings]
    assert len(ids) == len(set(ids)), "a finding fired twice"
    for f in first.findings:
        assert f.rule in RULES and f.severity == RULES[f.rule].severity
        assert f.fired_at.tzinfo is not None and f.message
    for st_ in first.states.values():
        assert decode_state(encode_state(st_)).facts == st_.facts
    # the same events in another arrival order, with repeats, give the same findings
    shuffled = list(events) + events[: len(events) // 3]
    rnd.shuffle(shuffled)
    again = run_events(ENGINE, shuffled, until=until)
    assert {(f.finding_id, f.fired_at) for f in again.findings} == {(f.finding_id, f.fired_at) for f in first.findings}
    assert sum(1 for n in again.notes if n.kind == "duplicate_event") == len(events[: len(events) // 3])


def test_contradictory_repeat_of_an_event_id_is_noted_and_changes_nothing() -> None:
    base = {"event_id": "same", "case_id": "c", "source": "s", "occurred_at": "2026-11-02T10:00:00+08:00"}
    first = decode_event(json.dumps({**base, "event_type": "accepted", "item_code": ITEMS[0]}))
    other = decode_event(json.dumps({**base, "event_type": "completed"}))
    out = run_events(ENGINE, [first, other])
    assert [n.kind for n in out.notes] == ["duplicate_event"]
    assert out.states["c"].d.completed_t is None


def test_contradictory_intake_resolves_by_rank_not_arrival() -> None:
    """Two acceptances naming different items at one instant: the earlier event id wins, either way round."""
    base = {"event_type": "accepted", "case_id": "c", "source": "s", "occurred_at": "2026-11-02T10:00:00+08:00"}
    a = decode_event(json.dumps({**base, "event_id": "a", "item_code": ITEMS[0]}))
    b = decode_event(json.dumps({**base, "event_id": "b", "item_code": ITEMS[1]}))
    for order in ([a, b], [b, a]):
        assert run_events(ENGINE, order).states["c"].info.item_code == ITEMS[0]


def test_zz_report_inputs_tried() -> None:
    print(f"\nfuzz inputs tried: parser {TRIED['parser']}, engine case sequences {TRIED['engine_cases']}")
    assert TRIED["parser"] >= 1000 and TRIED["engine_cases"] >= 200
