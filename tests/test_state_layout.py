"""Stored case states (the Faust changelog, checkpoints) stay readable across releases, or fail clearly.

The fixture is a state written by commit ad4fc31 (lists where the state now keeps tuples): a case with
two intake events, a finished supplement pause and three fired timeouts.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from rules.engine import Engine, decode_state, encode_state
from rules.state import StateLayoutError
from schemas.events import read_events

FIXTURE = Path(__file__).parent / "fixtures" / "case_state_v1_ad4fc31.msgpack"


def test_state_written_by_an_earlier_release_is_read_and_goes_on() -> None:
    st = decode_state(FIXTURE.read_bytes())
    assert st.case_id == "OLD-1" and st.v == 1
    assert [f.eid for f in st.facts] == [f"OLD-{i}" for i in range(1, 6)]
    assert st.info.applicant_name == "张三" and st.info.from_accepted and len(st.info.intakes) == 2
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
    with pytest.raises(StateLayoutError, match=r"layout version 7\).*layout version 1\)"):
        decode_state(raw)
    with pytest.raises(StateLayoutError, match="layout version unreadable"):
        decode_state(b"\xc1 damaged")
