"""A late event, end to end: the live run fired timeouts the replay (knowing the event) does not.

The live side is two ``esup run`` runs, as a live deployment would see it: the first has the case's
intake (its clock runs out: the promised limit and a step limit pass), the second, two weeks later,
brings the completion that had happened on the third day but was recorded only now. The replay reads
all four lines back in event-time order, so the case was completed in time; the diff must list the
live-only timeouts and name the late completion (and its back-dating) as the reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from esup.commands.replay import execute_replay
from esup.commands.run import execute

CASE = "61011320261012990001"
UNTIL = datetime.fromisoformat("2026-10-29T12:00:00+08:00")


def _line(n: int, typ: str, occurred: str, recorded: str, **kw: Any) -> str:
    doc = {"event_type": typ, "event_id": f"{CASE}-{n:02d}", "case_id": CASE, "occurred_at": occurred,
           "recorded_at": recorded, "source": "测试审批系统", "officer_id": "OF-1", **kw}
    return json.dumps(doc, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
def diff(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp: Path = tmp_path_factory.mktemp("late")
    intake = tmp / "intake.jsonl"
    intake.write_text(
        _line(1, "submitted", "2026-10-12T09:00:00+08:00", "2026-10-12T09:01:00+08:00", item_code="SC-003",
              region_code="610113", applicant={"name": "张三丰", "id_number": "110101199003071234",
                                              "phone": "13812345678"})
        + _line(2, "accepted", "2026-10-12T09:10:00+08:00", "2026-10-12T09:11:00+08:00", item_code="SC-003")
        + _line(3, "step_completed", "2026-10-12T09:20:00+08:00", "2026-10-12T09:21:00+08:00", step="受理"),
        encoding="utf-8")
    late = tmp / "late.jsonl"
    late.write_text(_line(4, "completed", "2026-10-14T10:00:00+08:00", "2026-10-28T16:00:00+08:00"),
                    encoding="utf-8")
    data = tmp / "data"
    first = execute(str(intake), store=str(data), until=UNTIL, report_invalid=False)
    assert {f.rule for f in first["result"].findings} >= {"TIMEOUT.PROMISED_OVERDUE", "TIMEOUT.STEP_OVERDUE"}
    execute(str(late), store=str(data), until=UNTIL, report_invalid=False)
    out = execute_replay(data_dir=data, until=UNTIL, diff=True, show_progress=False)
    return out["diff"]


def test_live_only_timeouts_are_explained_by_the_late_completion(diff: Any) -> None:
    live_only = {e.rule: e for e in diff.entries if e.kind == "only_live"}
    assert {"TIMEOUT.PROMISED_WARNING", "TIMEOUT.PROMISED_OVERDUE", "TIMEOUT.STEP_OVERDUE"} <= set(live_only)
    for rule in ("TIMEOUT.PROMISED_OVERDUE", "TIMEOUT.STEP_OVERDUE"):
        reasons = live_only[rule].reasons
        assert reasons[0].code == "late_event", reasons
        assert f"{CASE}-04" in reasons[0].text and "completed" in reasons[0].text
        assert "backdated" in [r.code for r in reasons]  # recorded two weeks after it happened


def test_the_completion_without_intake_seen_live_is_listed_too(diff: Any) -> None:
    # Live, the second run saw a completion with no acceptance in its own state.
    assert any(e.kind == "only_live" and e.rule == "PROCEDURE.NOT_ACCEPTED" for e in diff.entries)
    assert diff.cases() == [CASE]
    doc = diff.to_json()
    assert doc["only_live"] >= 4 and "late_event" in doc["reasons"]
    assert "13812345678" not in json.dumps(doc, ensure_ascii=False)
