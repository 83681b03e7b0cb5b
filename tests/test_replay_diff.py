"""The replay diff on hand-made finding rows: matching by id, and each reason it can name."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.catalog import Fee, Item
from schemas.events import CHINA_TZ
from streams.replay_diff import CaseEvidence, compare, explain, item_changes

T0 = datetime(2026, 10, 20, 0, 0, tzinfo=CHINA_TZ)
TOL = timedelta(hours=72)


def _row(fid: str, case: str = "C1", rule: str = "TIMEOUT.PROMISED_OVERDUE", fired: datetime = T0,
         run: str = "live", **kw: Any) -> dict[str, Any]:
    return {"run_id": run, "finding_id": fid, "rule": rule, "case_id": case, "severity": "red", "fired_at": fired,
            "catalog_version": "2026.10", "item_code": "ZR-002", "deadline": fired, "event_id": None,
            "message": "", **kw}


def _ev(eid: str, typ: str, occurred: datetime, recorded: datetime | None, raw_hash: int = 1) -> dict[str, Any]:
    return {"event_id": eid, "event_type": typ, "occurred_at": occurred, "recorded_at": recorded,
            "received_at": recorded, "valid": True, "raw_hash": raw_hash}


def test_findings_match_by_id_and_differences_are_sorted_per_rule() -> None:
    live = [_row("a"), _row("b", case="C2"), _row("c", case="C3", rule="FEE.DUPLICATE")]
    replay = [_row("a", run="r"), _row("c", case="C3", rule="FEE.DUPLICATE", run="r", fired=T0 + timedelta(hours=1)),
              _row("d", case="C4", run="r")]
    d = compare(live, replay)
    assert [(e.kind, e.case_id) for e in d.entries] == [("changed", "C3"), ("only_live", "C2"), ("only_replay", "C4")]
    assert d.same == 1 and d.cases() == ["C2", "C3", "C4"]
    by_rule = d.by_rule()
    assert by_rule["TIMEOUT.PROMISED_OVERDUE"].only_live == ["C2"]
    assert by_rule["TIMEOUT.PROMISED_OVERDUE"].only_replay == ["C4"]
    assert by_rule["FEE.DUPLICATE"].changed == ["C3"]
    assert compare(live, live).empty


def test_instants_compare_at_the_store_precision() -> None:
    exact = _row("a", fired=T0 + timedelta(microseconds=400))
    assert compare([_row("a")], [exact]).empty
    assert not compare([_row("a")], [_row("a", fired=T0 + timedelta(milliseconds=2))]).empty
    assert compare([_row("a")], [_row("a", fired=T0 + timedelta(milliseconds=400))], precision_ms=1000).empty


def test_a_late_event_explains_a_timeout_fired_live() -> None:
    d = compare([_row("a")], [])
    ev = CaseEvidence(events=[_ev("C1-01", "accepted", T0 - timedelta(days=9), T0 - timedelta(days=9)),
                              _ev("C1-09", "completed", T0 - timedelta(hours=3), T0 + timedelta(hours=2))],
                      live_version="2026.10", replay_version="2026.10", item_code="ZR-002")
    explain(d, {"C1": ev}, backdate_tolerance=TOL)
    reasons = d.entries[0].reasons
    assert [r.code for r in reasons] == ["late_event"]
    assert "C1-09" in reasons[0].text and "才记录" in reasons[0].text


def test_backdated_conflicting_and_horizon_reasons() -> None:
    d = compare([_row("a", fired=T0 + timedelta(days=30))], [])
    ev = CaseEvidence(events=[
        _ev("C1-02", "step_completed", T0 - timedelta(days=10), T0 - timedelta(days=5)),
        _ev("C1-03", "fee_paid", T0 - timedelta(days=4), T0 - timedelta(days=4), raw_hash=1),
        _ev("C1-03", "fee_paid", T0 - timedelta(days=3), T0 - timedelta(days=3), raw_hash=2),
    ])
    explain(d, {"C1": ev}, backdate_tolerance=TOL, replay_until=T0)
    codes = [r.code for r in d.entries[0].reasons]
    assert codes == ["backdated", "conflicting_duplicate", "horizon"]
    assert "5.0 天" in d.entries[0].reasons[0].text


def test_catalog_changes_name_the_item_fields() -> None:
    d = compare([_row("a")], [_row("a", run="r", fired=T0 - timedelta(days=4), catalog_version="2026.11")])
    ev = CaseEvidence(live_version="2026.10", replay_version="2026.11", item_code="ZR-002",
                      item_changes=["承诺时限（工作日） 7 → 3"])
    explain(d, {"C1": ev}, backdate_tolerance=TOL)
    r = d.entries[0].reasons[0]
    assert r.code == "catalog_change" and "2026.10" in r.text and "2026.11" in r.text and "7 → 3" in r.text
    d2 = compare([], [_row("b", run="r")])
    explain(d2, {"C1": CaseEvidence(live_version="2026.10", replay_version="2026.10", item_code="ZR-002",
                                    item_changes=["承诺时限（工作日） 7 → 3"], replay_catalog_label="指定目录文件 x")},
            backdate_tolerance=TOL)
    assert "目录版本同为 2026.10" in d2.entries[0].reasons[0].text


def test_nothing_visible_is_said_plainly() -> None:
    d = compare([], [_row("a", run="r")])
    explain(d, {}, backdate_tolerance=TOL)
    assert [r.code for r in d.entries[0].reasons] == ["unknown"]
    doc = d.to_json()
    assert doc["only_replay"] == 1 and doc["entries"][0]["reasons"][0]["name"] == "未能自动判断"


def test_item_changes() -> None:
    a = Item(code="X", name="x", department="d", kind="promised", promised_days=7, statutory_days=20,
             steps=("受理", "审核"), fees=(Fee(code="F1", name="f", amount=Decimal("10")),))
    b = Item(code="X", name="x", department="d", kind="promised", promised_days=3, statutory_days=20,
             steps=("受理", "审查", "审核"), fees=())
    assert item_changes(a, a) == []
    assert item_changes(a, b) == ["承诺时限（工作日） 7 → 3", "办理环节 受理→审核 → 受理→审查→审核", "收费项目 F1 10 元 → 无"]
    assert item_changes(a, None) == ["重放所用目录中没有该事项"]
