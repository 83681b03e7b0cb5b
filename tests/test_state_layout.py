"""Stored case states (the Faust changelog, checkpoints) stay readable across releases, or fail clearly.

The fixture is a state written by commit ad4fc31 (layout 1: facts with arrival numbers, intakes with a
rank tuple, steps with their officer): a case with two intake events, a step, a finished supplement
pause and three fired timeouts. Layout 2 reads it by conversion.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from rules.engine import Engine, decode_state, encode_state
from rules.state import STATE_VERSION, StateLayoutError
from schemas.events import read_events

FIXTURE = Path(__file__).parent / "fixtures" / "case_state_v1_ad4fc31.msgpack"


def test_state_written_by_an_earlier_release_is_read_and_goes_on() -> None:
    st = decode_state(FIXTURE.read_bytes())
    assert st.case_id == "OLD-1" and st.v == STATE_VERSION == 2
    assert [f.eid for f in st.facts] == [f"OLD-{i}" for i in range(1, 6)]
    assert st.info.applicant_name == "张三" and st.info.from_accepted and len(st.info.intakes) == 2
    assert [i.eid for i in st.info.intakes] == ["OLD-2", "OLD-1"]  # accepted ranks before submitted
    assert st.info.intakes[0].fields == (st.info.item_code,)  # trailing Nones dropped
    assert list(st.d.steps.values()) == [st.facts[2].t] and st.d.supplement_count == 1  # folded again
    assert [(p.kind, p.eid) for p in st.d.pauses] == [("supplement", "OLD-4")] and st.d.pauses[0].end is not None
    assert "TIMEOUT.PROMISED_OVERDUE|TIMEOUT.PROMISED_OVERDUE" in st.fired
    eng = Engine.default()
    line = json.dumps({"event_id": "NEW-6", "event_type": "completed", "case_id": "OLD-1", "source": "test",
                       "occurred_at": "2027-03-02T09:00:00+08:00"}).encode()
    out = eng.apply(st, next(iter(read_events([line]))))
    again = eng.advance(out.state, datetime.fromisoformat("2027-06-01T00:00:00+08:00"))
    fired = {f.rule for f in out.findings + again.findings}
    assert not fired & {"TIMEOUT.PROMISED_OVERDUE", "TIMEOUT.STATUTORY_OVERDUE"}  # already raised: not again
    assert decode_state(encode_state(again.state)) == again.state


def test_unreadable_state_names_both_layout_versions() -> None:
    raw = msgspec.msgpack.encode({"case_id": "X", "v": 7, "facts": [["not", "a", "fact"]]})
    with pytest.raises(StateLayoutError, match=rf"layout version 7\).*layout version {STATE_VERSION}\)"):
        decode_state(raw)
    damaged_v1 = msgspec.msgpack.encode({"case_id": "X", "v": 1, "facts": [["not", "a", "fact"]]})
    with pytest.raises(StateLayoutError, match=r"layout version 1\)"):
        decode_state(damaged_v1)
    with pytest.raises(StateLayoutError, match="layout version unreadable"):
        decode_state(b"\xc1 damaged")
