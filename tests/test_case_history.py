"""``esup case history``: one case's whole story from the warehouse, personal data masked.

Simulated traffic is stored by ``esup run``, one broken line and one alert delivery are added for a
case, and a replay adds a second run: the history must show every line in event-time order (the broken
one with its reason), the clock as the engine computes it, findings of both runs labelled, the
delivery, and never an applicant's name, ID number or phone number in clear.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alerting.masking import find_unmasked, mask_id_number, mask_name, mask_phone
from esup.cli import app
from esup.commands.replay import execute_replay
from esup.commands.run import execute
from simulator import write
from streams.embedded import load
from warehouse import open_warehouse


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("history")
    events = tmp / "events.jsonl"
    write(events, None, cases=300, days=30, seed=4)
    with open(events, "rb") as fh:
        valid, _, _ = load(fh)
    out = execute(str(events), store=str(tmp / "data"), report_invalid=False)
    findings = out["result"].findings
    # the case with a supplement period and a finding, if any; else any case with a finding
    supplemented = {e.case_id for e in valid if e.event_type == "supplement_requested"}
    with_findings = {f.case_id for f in findings}
    case_id = sorted(supplemented & with_findings or with_findings)[0]
    mine = [e for e in valid if e.case_id == case_id]
    broken = (b'{"event_type":"fee_paid","event_id":"' + case_id.encode() + b'-99","case_id":"' + case_id.encode()
              + b'","occurred_at":"' + max(e.occurred_at for e in mine).isoformat().encode()
              + b'","source":"test"}\n')
    extra = tmp / "broken.jsonl"
    extra.write_bytes(broken)
    execute(str(extra), store=str(tmp / "data"), report_invalid=False)
    finding = next(f for f in findings if f.case_id == case_id)
    wh = open_warehouse(str(tmp / "data"))
    try:
        wh.insert("alert_deliveries", [{
            "delivery_id": "d-1", "attempt": 1, "result": "ok", "alert_id": finding.finding_id,
            "finding_ids": [finding.finding_id], "recipient": "监察室", "channel": "email", "kind": "finding",
            "attempted_at": datetime(2026, 11, 2, 9, 0, tzinfo=UTC), "error": "", "digest": 0, "detail": "{}"}])
    finally:
        wh.close()
    replay = execute_replay(data_dir=tmp / "data", cases=[case_id], run_id="audit-case", show_progress=False)
    applicant = next(e.applicant for e in mine if e.event_type == "submitted" and e.applicant)
    return {"data": tmp / "data", "case_id": case_id, "events": mine, "findings": findings,
            "applicant": applicant, "replay": replay}


def _run(stored: dict[str, Any], *args: str) -> Any:
    res = CliRunner().invoke(app, ["case", "history", stored["case_id"], "--data-dir", str(stored["data"]), *args],
                             env={"COLUMNS": "240"})
    assert res.exit_code == 0, res.output
    return res


def test_the_json_history_tells_the_whole_story(stored: dict[str, Any]) -> None:
    doc = json.loads(_run(stored, "--json").stdout)
    events = doc["events"]
    times = [e["occurred_at"] for e in events]
    assert times == sorted(times, key=lambda t: datetime.fromisoformat(t))
    valid = [e for e in events if e["valid"]]
    assert {e["event_id"] for e in valid} == {e.event_id for e in stored["events"]}
    bad = [e for e in events if not e["valid"]]
    assert len(bad) == 1 and bad[0]["event_id"].endswith("-99") and "schema" in bad[0]["error"]
    assert all(e["recorded_at"] for e in valid)

    clock = doc["clock"]
    accepted = [e for e in stored["events"] if e.event_type == "accepted"]
    if accepted:
        assert datetime.fromisoformat(clock["accepted_at"]) == min(e.occurred_at for e in accepted)
    assert clock["catalog_version"] == "2026.10"
    facts = doc["facts"]
    assert clock["promised_due_at"] == facts["promised_due_at"] or (
        clock["promised_due_at"] and facts["promised_due_at"]
        and datetime.fromisoformat(clock["promised_due_at"]) == datetime.fromisoformat(facts["promised_due_at"]))
    supplements = [e for e in stored["events"] if e.event_type == "supplement_requested"]
    assert len([p for p in clock["pauses"] if p["kind"] == "supplement"]) == len(supplements)
    assert any(d["state"] in ("已触发", "已满足", "待触发") for d in clock["deadlines"])

    runs = {f["run_id"] for f in doc["findings"]}
    assert runs == {"live", "audit-case"}
    live = {f["finding_id"] for f in doc["findings"] if f["run_id"] == "live"}
    assert live == {f.finding_id for f in stored["findings"] if f.case_id == stored["case_id"]}
    delivered = [f for f in doc["findings"] if f["deliveries"]]
    assert delivered and delivered[0]["run_id"] == "live" and delivered[0]["deliveries"][0]["result"] == "ok"


def test_personal_data_is_masked_everywhere(stored: dict[str, Any]) -> None:
    a = stored["applicant"]
    for out in (_run(stored, "--json").stdout, _run(stored).stdout):
        for value in (a.name, a.id_number, a.phone):
            if value:
                assert value not in out
        assert find_unmasked(out) == []
    text = _run(stored).stdout
    if a.name:
        assert mask_name(a.name) in text
    if a.id_number:
        assert mask_id_number(a.id_number) in text
    if a.phone:
        assert mask_phone(a.phone) in text


def test_the_table_output_labels_runs_and_clock(stored: dict[str, Any]) -> None:
    text = _run(stored).stdout
    for label in ("事件（按事件时间）", "计时状态", "承诺期限", "法定期限", "实时", "重放 audit-case", "无效"):
        assert label in text
    at = (max(e.occurred_at for e in stored["events"]) + timedelta(days=60)).isoformat()
    doc = json.loads(_run(stored, "--json", "--at", at).stdout)
    assert datetime.fromisoformat(doc["clock"]["as_of"]) == datetime.fromisoformat(at)
    first = min(e.occurred_at for e in stored["events"])
    early = json.loads(_run(stored, "--json", "--at", (first + timedelta(seconds=1)).isoformat()).stdout)
    assert early["clock"]["completed_at"] is None and early["clock"]["status"] != "completed"
    assert len(early["events"]) == len(doc["events"])  # the stored lines are all listed; the clock is as of then


def test_an_unknown_case_is_said_so(stored: dict[str, Any], tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["case", "history", "NO-SUCH-CASE", "--data-dir", str(stored["data"])])
    assert res.exit_code == 1
    assert "未找到办件" in res.output
