"""Acceptance of the audit replay (esup replay) on a real chDB warehouse.

A month of simulated traffic is run by the embedded driver and stored exactly as ``esup run`` stores it;
the replay then reads it back from the warehouse. What is checked is what an auditor relies on: the
replay reproduces the live findings exactly (ids and instants), a catalog change shows up as exactly
the cases whose outcome it changes (computed independently with the embedded driver), the storage
order and the bucket size change nothing, an interrupted replay resumes to the same result, selections
take whole cases, and replay findings never mix with live ones.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from esup.commands.replay import execute_replay
from esup.commands.run import execute
from rules.calendar import WorkCalendar
from rules.catalog import CatalogSet, load_catalog
from rules.config import load_rule_config
from rules.engine import Engine
from schemas.events import Accepted, Submitted
from simulator import write
from streams.embedded import load, run_events
from streams.replay import (
    CatalogChoice,
    Checkpoint,
    ReplayError,
    ReplayInterrupted,
    Selection,
    WarehouseSource,
    engines_for,
    plan_replay,
    run_replay,
)
from warehouse import Sink, open_warehouse

CASES = 2000
ITEM = "ZR-002"  # a promised item (7 working days) with enough cases in a month of traffic


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A month of traffic stored by ``esup run``, and what the embedded run found."""
    tmp = tmp_path_factory.mktemp("replay")
    events = tmp / "events.jsonl"
    write(events, None, cases=CASES, days=30, seed=21)
    data = tmp / "data"
    out = execute(str(events), store=str(data), report_invalid=False)
    return {"tmp": tmp, "events": events, "data": data, "live": out["result"].findings}


def _key(findings: list[Any]) -> set[tuple[str, float]]:
    return {(f.finding_id, f.fired_at.timestamp()) for f in findings}


def _valid_events(path: Path) -> list[Any]:
    with open(path, "rb") as fh:
        valid, invalid, _ = load(fh)
    assert not invalid
    return valid


def _changed_catalog(tmp: Path, item: str, days: int) -> Path:
    """A copy of the shipped catalog with one item's promised_days changed (same version name)."""
    text = Path("config/catalog.yaml").read_text(encoding="utf-8")
    start = text.index(f"code: {item}")
    m = re.compile(r"promised_days: \d+").search(text, start)
    assert m is not None
    path = tmp / f"catalog-{item}-{days}.yaml"
    path.write_text(text[:m.start()] + f"promised_days: {days}" + text[m.end():], encoding="utf-8")
    return path


def _replay(month: dict[str, Any], **kw: Any) -> dict[str, Any]:
    kw.setdefault("data_dir", month["data"])
    kw.setdefault("show_progress", False)
    return execute_replay(**kw)


def test_replaying_the_month_reproduces_the_embedded_run_exactly(month: dict[str, Any]) -> None:
    out = _replay(month, diff=True)
    d = out["diff"]
    assert d.empty, [e.to_json() for e in d.entries[:5]]
    assert d.live_count == len(month["live"]) > 50
    assert _key(out["findings"]) == _key(month["live"])
    assert {f.finding_id: f for f in out["findings"]} == {f.finding_id: f for f in month["live"]}
    assert out["result"].cases == CASES
    # stored under the replay's own run id, beside (never instead of) the live findings
    wh = open_warehouse(str(month["data"]))
    try:
        rows = wh.query("SELECT run_id, uniqExact(finding_id) AS n FROM findings GROUP BY run_id ORDER BY run_id")
    finally:
        wh.close()
    counts = {r["run_id"]: int(r["n"]) for r in rows}
    assert counts["live"] == len(month["live"])
    assert counts[out["plan"].run_id] == len(month["live"])
    assert out["plan"].run_id.startswith("replay-")


def test_a_changed_promised_limit_shows_exactly_the_cases_it_changes(month: dict[str, Any]) -> None:
    changed = _changed_catalog(month["tmp"], ITEM, 3)
    # Expectation, independently: the embedded driver under the changed catalog, compared per case.
    engine = Engine(CatalogSet.single(load_catalog(changed)), WorkCalendar.default(), load_rule_config())
    other = run_events(engine, _valid_events(month["events"])).findings
    per_case: dict[str, set[Any]] = defaultdict(set)
    for side, findings in (("a", month["live"]), ("b", other)):
        for f in findings:
            per_case[f.case_id].add((side, f.finding_id, f.fired_at.timestamp(), f.severity))
    expected = sorted(cid for cid, s in per_case.items()
                      if {x[1:] for x in s if x[0] == "a"} != {x[1:] for x in s if x[0] == "b"})
    assert expected, "the changed limit must change some outcome for the test to mean anything"

    out = _replay(month, catalog=changed, diff=True)
    d = out["diff"]
    assert d.cases() == expected
    assert {e.rule for e in d.entries} <= {"TIMEOUT.PROMISED_WARNING", "TIMEOUT.PROMISED_OVERDUE"}
    for e in d.entries:
        assert (e.live or e.replay)["item_code"] == ITEM
        assert e.reasons[0].code == "catalog_change"
        assert "承诺时限（工作日） 7 → 3" in e.reasons[0].text
    assert _key(out["findings"]) == _key(other)


def test_storage_order_and_bucket_size_change_nothing(month: dict[str, Any]) -> None:
    lines = month["events"].read_bytes().splitlines(keepends=True)
    random.Random(5).shuffle(lines)
    shuffled = month["tmp"] / "shuffled.jsonl"
    shuffled.write_bytes(b"".join(lines))
    data2 = month["tmp"] / "data-shuffled"
    execute(str(shuffled), store=str(data2), report_invalid=False)

    a, b, c, d = (month["tmp"] / f"findings-{n}.jsonl" for n in "abcd")
    first = _replay(month, findings_out=a)
    second = _replay(month, data_dir=data2, findings_out=b)
    third = _replay(month, data_dir=data2, findings_out=c, bucket_events=1500, no_store=True)
    fourth = _replay(month, data_dir=data2, findings_out=d, bucket_events=2500, workers=2, run_id="audit-pool")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes() == d.read_bytes()
    assert fourth["result"].workers == 2 and fourth["diff"] is None
    assert len(a.read_bytes().splitlines()) == len(month["live"])
    assert first["plan"].run_id == second["plan"].run_id  # same question, same run id
    assert len(third["plan"].buckets) > 5


def test_an_interrupted_replay_resumes_to_the_same_result(month: dict[str, Any]) -> None:
    whole = month["tmp"] / "whole.jsonl"
    _replay(month, findings_out=whole, run_id="audit-whole", no_store=True)
    state = month["tmp"] / "state"

    wh = open_warehouse(str(month["data"]))
    try:
        engines = engines_for(CatalogChoice(), None, None)
        source = WarehouseSource(wh)
        plan, cases = plan_replay(source, Selection(), engines, run_id="audit-1", target_events=2000)
        assert len(plan.buckets) >= 6
        cp = Checkpoint(state, plan.run_id)
        cp.plan = plan
        cp.save()

        def ctrl_c(n: int) -> None:
            if n >= 6000:
                raise KeyboardInterrupt

        with Sink(wh) as sink, pytest.raises(ReplayInterrupted) as info:
            run_replay(source, plan, engines, cases, sink=sink, checkpoint=cp, progress=ctrl_c,
                       checkpoint_seconds=0)
    finally:
        wh.close()
    assert 0 < info.value.done < len(plan.buckets)
    saved = Checkpoint(state, "audit-1").load()
    assert saved.done == set(range(info.value.done)) and not saved.finished

    resumed = month["tmp"] / "resumed.jsonl"
    out = _replay(month, resume="audit-1", state=state, findings_out=resumed, diff=True)
    assert out["result"].skipped_buckets == info.value.done
    assert 0 < out["result"].events < sum(b.events for b in plan.buckets)
    assert resumed.read_bytes() == whole.read_bytes()
    assert out["diff"].empty
    assert Checkpoint(state, "audit-1").load().finished
    with pytest.raises(ReplayError, match="--resume"):
        _replay(month, resume="audit-1", state=state, department="公安局")


def test_a_worker_killed_mid_replay_stops_it_with_a_clear_error_and_a_resume_finishes_it(
        month: dict[str, Any]) -> None:
    """A worker process killed (the OOM killer, say) while buckets are in flight: the replay ends at once
    with an operator's message instead of hanging, keeps the buckets that finished, and a resume gives
    the result an uninterrupted replay gives."""
    whole = month["tmp"] / "whole-killed.jsonl"
    _replay(month, findings_out=whole, run_id="audit-whole-k", no_store=True)
    state = month["tmp"] / "state-killed"
    outcome: dict[str, Any] = {}
    wh = open_warehouse(str(month["data"]))
    try:
        engines = engines_for(CatalogChoice(), None, None)
        source = WarehouseSource(wh)
        plan, cases = plan_replay(source, Selection(), engines, run_id="audit-killed", target_events=1500)
        cp = Checkpoint(state, plan.run_id)
        cp.plan = plan
        cp.save()
        killed: list[int] = []

        def kill_a_worker(n: int) -> None:
            if not killed:
                victim = multiprocessing.active_children()[0]
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim.pid)

        def replay() -> None:
            try:
                with Sink(wh) as sink:
                    run_replay(source, plan, engines, cases, sink=sink, checkpoint=cp, progress=kill_a_worker,
                               checkpoint_seconds=0, workers=2)
            except BaseException as exc:  # noqa: BLE001 - inspected below
                outcome["error"] = exc

        runner = threading.Thread(target=replay, daemon=True)
        runner.start()
        runner.join(120)
        if runner.is_alive():  # unblock it before failing, or the test run itself would hang
            for child in multiprocessing.active_children():
                child.kill()
            runner.join(30)
            pytest.fail("the replay hung after one of its workers was killed")
    finally:
        wh.close()
    assert killed
    assert isinstance(outcome.get("error"), ReplayError), outcome
    assert "工作进程意外退出" in str(outcome["error"]) and "--resume" in str(outcome["error"])
    saved = Checkpoint(state, "audit-killed").load()
    assert 0 < len(saved.done) < len(plan.buckets) and not saved.finished
    assert not list(Path("/dev/shm").glob("esup-replay-*"))  # the spool went with the pool

    resumed = month["tmp"] / "resumed-killed.jsonl"
    out = _replay(month, resume="audit-killed", state=state, findings_out=resumed, diff=True, workers=2)
    assert out["result"].skipped_buckets == len(saved.done)
    assert resumed.read_bytes() == whole.read_bytes()
    assert out["diff"].empty


def _intake_department(events: list[Any]) -> dict[str, str | None]:
    items = {i.code: i.department for i in load_catalog().items}
    by_case: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        by_case[e.case_id].append(e)
    out = {}
    for cid, evs in by_case.items():
        def latest(kind: type, name: str, evs: list[Any] = evs) -> Any:
            vals = sorted((e.occurred_at, getattr(e, name)) for e in evs if isinstance(e, kind) and getattr(e, name))
            return vals[-1][1] if vals else None
        dept = latest(Accepted, "department") or latest(Submitted, "department")
        item = latest(Accepted, "item_code") or latest(Submitted, "item_code")
        out[cid] = dept or items.get(item)
    return out


def test_selections_take_whole_cases(month: dict[str, Any]) -> None:
    events = _valid_events(month["events"])
    depts = _intake_department(events)
    dept = "公安局"
    wanted = sorted(c for c, d in depts.items() if d == dept)
    out = _replay(month, department=dept, diff=True)
    assert [c.case_id for c in out["selected"]] == wanted
    unique = {(e.case_id, e.event_id, e.occurred_at) for e in events if e.case_id in set(wanted)}
    assert out["result"].events == len(unique)  # every event of every chosen case, re-deliveries once
    assert out["diff"].empty and out["diff"].live_count == sum(f.case_id in set(wanted) for f in month["live"])
    assert {f.case_id for f in out["findings"]} <= set(wanted)

    first: dict[str, Any] = {}
    for e in events:
        if e.case_id not in first or e.occurred_at < first[e.case_id]:
            first[e.case_id] = e.occurred_at
    days = sorted({t.date() for t in first.values()})
    lo, hi = days[3], days[8]
    sel = _replay(month, day_from=lo, day_to=hi, no_store=True)
    assert [c.case_id for c in sel["selected"]] == sorted(c for c, t in first.items() if lo <= t.date() <= hi)

    one = wanted[0]
    single = _replay(month, cases=[one], department=dept, diff=True)
    assert [c.case_id for c in single["selected"]] == [one] and single["diff"].empty


def test_an_exported_archive_replays_like_the_warehouse(month: dict[str, Any]) -> None:
    a, b = month["tmp"] / "wh.jsonl", month["tmp"] / "archive.jsonl"
    _replay(month, findings_out=a, no_store=True)
    out = _replay(month, events=month["events"], findings_out=b, no_store=True)
    assert a.read_bytes() == b.read_bytes()
    assert out["plan"].source.startswith("archive:")


def test_catalog_history_as_recorded_or_by_date(month: dict[str, Any]) -> None:
    """A later version on file does not change what the live run recorded, unless asked."""
    hist = month["tmp"] / "catalogs"
    hist.mkdir()
    doc = yaml.safe_load(Path("config/catalog.yaml").read_text(encoding="utf-8"))
    doc["version"], doc["effective_from"] = "2026.11", "2026-10-20"
    for item in doc["items"]:
        if item["code"] == ITEM:
            item["promised_days"] = 2
    (hist / "2026.11.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    recorded = _replay(month, catalogs_dir=hist, diff=True, no_store=True)
    assert recorded["diff"].empty  # every case keeps the version the live run recorded (2026.10)

    by_date = _replay(month, catalogs_dir=hist, catalog_as_of="accepted", diff=True, no_store=True)
    d = by_date["diff"]
    assert not d.empty
    for e in d.entries:
        if e.replay is not None:
            assert e.replay["catalog_version"] == "2026.11"
        assert e.reasons[0].code == "catalog_change"
        assert "2026.11" in e.reasons[0].text and "7 → 2" in e.reasons[0].text
    versions = by_date["result"].catalog_versions
    assert set(versions) == {"2026.10", "2026.11"}

    as_of = _replay(month, catalogs_dir=hist, catalog_as_of="2026-11-01", no_store=True)
    assert set(as_of["result"].catalog_versions) == {"2026.11"}
    assert {f.catalog_version for f in as_of["findings"]} == {"2026.11"}


def test_run_ids_are_checked_and_a_rerun_replaces_its_findings(month: dict[str, Any]) -> None:
    with pytest.raises(ReplayError, match="live"):
        _replay(month, run_id="live")
    with pytest.raises(ReplayError):
        _replay(month, run_id="x; DROP TABLE findings")
    changed = _changed_catalog(month["tmp"], ITEM, 3)
    _replay(month, run_id="audit-rerun", catalog=changed)
    _replay(month, run_id="audit-rerun")  # same run id, shipped catalog: the earlier findings are replaced
    wh = open_warehouse(str(month["data"]))
    try:
        rows = wh.query("SELECT finding_id FROM findings FINAL WHERE run_id = {r:String}", {"r": "audit-rerun"})
    finally:
        wh.close()
    assert {r["finding_id"] for r in rows} == {f.finding_id for f in month["live"]}


def test_the_command_line(month: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from esup.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["replay", "--data-dir", str(month["data"]), "--diff", "--json", "-q",
                              "--department", "公安局"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["diff"]["only_live"] == doc["diff"]["only_replay"] == doc["diff"]["changed"] == 0
    assert doc["selection"]["department"] == "公安局" and doc["findings"] > 0
    res = runner.invoke(app, ["replay", "--data-dir", str(month["data"]), "--diff", "-q",
                              "--catalog", str(_changed_catalog(month["tmp"], ITEM, 3))])
    assert res.exit_code == 0, res.output
    assert "目录不同" in res.stdout and "仅重放触发" in res.stdout
    res = runner.invoke(app, ["replay", "--data-dir", str(month["data"]), "--from", "2026-13-01"])
    assert res.exit_code != 0
