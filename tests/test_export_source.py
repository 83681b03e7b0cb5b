"""Where the monthly export's rows come from: the warehouse (chDB), JSON Lines files, the rules engine,
and the ``esup export monthly`` command line. Whatever the source, the same data must give the same
report, byte for byte in CSV, and the same data hash.

chDB serves one data directory per process, so every test opens its warehouse and closes it again.
"""

from __future__ import annotations

import itertools
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import openpyxl
import pytest
from typer.testing import CliRunner

from reports.csv import csv_files
from reports.monthly import build
from reports.source import load_from_events, load_from_files, load_from_warehouse, monthly_report
from tests.test_export import GEN_AT, MONTH, SCORING, hand_month, make_report, scoring_doc
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - session fixture

SOURCE = "手工构造的测试数据"
_db = itertools.count()


def _same_report(a: Any, b: Any) -> None:
    """Every sheet byte-identical (the cover too: both reports carry the same source text)."""
    fa, fb = csv_files(a), csv_files(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        assert fa[name] == fb[name], name


def _contract_event(e: dict[str, Any]) -> dict[str, Any]:
    doc = {"event_type": e["event_type"], "event_id": e["event_id"], "case_id": e["case_id"],
           "occurred_at": e["occurred_at"].isoformat(), "source": "测试系统"}
    if e["event_type"] == "rated":
        doc["level"] = e["level"]
    if e.get("complaint_id"):
        doc["complaint_id"] = e["complaint_id"]
    if e["event_type"] == "step_completed":
        doc["step"] = "审核"
    return doc


def _store(wh: Any, facts: list[dict[str, Any]], findings: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    wh.migrate()
    wh.insert("case_facts", facts)
    rows = [{**f, "run_id": "live", "category": f["rule"].split(".")[0]} for f in findings]
    wh.insert("findings", rows + rows[:3])  # a retried batch: FINAL must count it once
    wh.insert("events", [{"case_id": e["case_id"], "occurred_at": e["occurred_at"], "event_id": e["event_id"],
                          "event_type": e["event_type"], "source": "测试系统", "received_at": e["occurred_at"],
                          "level": e["level"] or 0, "valid": 1,
                          "raw": json.dumps(_contract_event(e), ensure_ascii=False).encode()} for e in events])
    # an invalid line must never count
    wh.insert("events", [{"case_id": "B1", "occurred_at": events[0]["occurred_at"], "event_id": "BAD-1",
                          "event_type": "rated", "received_at": events[0]["occurred_at"], "level": 1, "valid": 0,
                          "error": "schema", "raw": b"{broken"}])


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A chDB directory, or a fresh database on the ClickHouse server the session fixture started."""
    if request.param == "chdb":
        return str(tmp_path / "wh")
    url = request.getfixturevalue("clickhouse_server")
    return f"{url}/esup_export_{os.getpid()}_{next(_db)}"


def test_warehouse_gives_the_same_report_as_the_rows(target: str) -> None:
    from warehouse import open_warehouse

    facts, findings, events = hand_month()
    wh = open_warehouse(target)
    try:
        _store(wh, facts, findings, events)
        inp = load_from_warehouse(wh, MONTH, region="330102")
        all_regions = monthly_report(wh, MONTH, config=SCORING, generated_at=GEN_AT, generated_by="效能办 李四",
                                     source=SOURCE)
    finally:
        wh.close()
    assert not any("applicant_name" in f for f in inp.facts)  # no personal data is read
    got = build(inp.facts, inp.findings, inp.events, month=MONTH, region="330102", config=SCORING,
                generated_at=GEN_AT, generated_by="效能办 李四", source=SOURCE)
    want = make_report()
    assert got.data_sha256 == want.data_sha256
    _same_report(got, want)
    _same_report(all_regions, make_report(region=None))


SHARED_FIGURES = ("received", "accepted", "completed", "completed_on_time", "on_the_spot_completed",
                  "on_the_spot_same_day", "intake_rejections", "supplements", "ratings", "ratings_good", "complaints")


def test_figures_agree_with_the_warehouse_dashboard_query(target: str) -> None:
    """The export and ``warehouse.reads.window_monthly_figures`` (what dashboards show) define these
    figures the same way; they must never disagree about a window's month."""
    from warehouse import open_warehouse
    from warehouse.reads import window_monthly_figures

    facts, findings, events = hand_month()
    wh = open_warehouse(target)
    try:
        _store(wh, facts, findings, events)
        theirs = window_monthly_figures(wh, MONTH, region="330102", now=GEN_AT)
    finally:
        wh.close()
    ours = {(w.department, w.window): w.figures for w in make_report().windows}
    unknown = ("（未登记部门）", "（未登记窗口）")
    compared = 0
    for row in theirs:
        key = (row["department"] or unknown[0], row["window"] or unknown[1])
        if key not in ours:
            assert not any(row[f] for f in SHARED_FIGURES), key  # e.g. findings without a unit of their own
            continue
        for f in SHARED_FIGURES:
            assert row[f] == getattr(ours[key], f), (key, f)
        compared += 1
    assert compared == len(ours)


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    enc = msgspec.json.Encoder(decimal_format="number")
    path.write_bytes(b"".join(enc.encode(r) + b"\n" for r in rows))
    return path


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    facts, findings, events = hand_month()
    return (_write_jsonl(tmp_path / "facts.jsonl", facts), _write_jsonl(tmp_path / "findings.jsonl", findings),
            _write_jsonl(tmp_path / "events.jsonl", [_contract_event(e) for e in events] + [{"broken": True}]))


def test_json_lines_files_give_the_same_report(tmp_path: Path) -> None:
    f, x, e = _files(tmp_path)
    inp = load_from_files(f, x, e)
    assert "1 行无效已忽略" in inp.source
    got = build(inp.facts, inp.findings, inp.events, month=MONTH, region="330102", config=SCORING,
                generated_at=GEN_AT, generated_by="效能办 李四", source=SOURCE)
    assert got.data_sha256 == make_report().data_sha256
    _same_report(got, make_report())


def _cli(args: list[str]) -> Any:
    from esup.cli import app

    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_command_line_from_files(tmp_path: Path) -> None:
    f, x, e = _files(tmp_path)
    scoring = tmp_path / "scoring.yaml"
    scoring.write_text(json.dumps(scoring_doc(), ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    base = ["export", "monthly", "--month", MONTH, "--region", "330102", "--facts", str(f), "--findings", str(x),
            "--events", str(e), "--scoring", str(scoring), "--generated-by", "效能办 李四",
            "--generated-at", "2026-11-05T09:30:00+08:00"]
    res = _cli(base + ["--out", str(tmp_path / "m.xlsx")])
    assert res.exit_code == 0, res.output
    assert "三优：税务局 / 办税窗口、公安局 / 出入境窗口、民政局 / 婚姻登记窗口" in res.output.replace("\n", "")
    wb = openpyxl.load_workbook(tmp_path / "m.xlsx")
    rows = list(wb["窗口排名"].iter_rows(values_only=True))
    assert [(r[0], r[1], r[3], r[4]) for r in rows[1:4]] == [(1, "三优", "办税窗口", 100.0),
                                                            (2, "三优", "出入境窗口", 100.0),
                                                            (3, "三优", "婚姻登记窗口", 92.0)]
    cover = {r[0]: r[1] for r in wb["封面"].iter_rows(values_only=True)}
    assert cover["数据 SHA-256"] == make_report().data_sha256
    assert cover["生成人"] == "效能办 李四"

    for run in ("a", "b"):
        res = _cli(base + ["--format", "csv", "--out", str(tmp_path / run), "--quiet"])
        assert res.exit_code == 0, res.output
    want = csv_files(make_report())
    for name in want:
        got = (tmp_path / "a" / name).read_bytes()
        assert got == (tmp_path / "b" / name).read_bytes(), name
        if name != "01-cover.csv":  # the cover names the source files
            assert got == want[name], name


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "pdf"], "xlsx 或 csv"),
    (["--region", "33"], "6 位"),
    (["--data-dir", "/nonexistent/esup-data"], "不存在"),
    (["--facts", "a.jsonl"], "须同时给出"),
    (["--month", "2026-13", "--events", "/nonexistent/ev.jsonl"], "YYYY-MM"),
])
def test_command_line_refuses_bad_options_clearly(args: list[str], message: str) -> None:
    base = ["export", "monthly"] + (["--month", MONTH] if "--month" not in args else [])
    res = _cli(base + args)
    assert res.exit_code == 2
    assert message in res.output


def test_command_line_reports_a_broken_scoring_file(tmp_path: Path) -> None:
    f, x, e = _files(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: x\nindicators: {on_time_rate: {weight: 10}}\n", encoding="utf-8")
    res = _cli(["export", "monthly", "--month", MONTH, "--facts", str(f), "--findings", str(x),
                "--scoring", str(bad), "--out", str(tmp_path / "x.xlsx")])
    assert res.exit_code == 2
    assert "评分配置有误" in res.output and "权重之和应为 100" in res.output


def _simulate(tmp_path: Path) -> Path:
    from datetime import date

    from simulator import write

    events = tmp_path / "events.jsonl"
    write(events, None, cases=400, days=31, seed=5, start=date(2026, 10, 1), violation_rate=0.1)
    return events


def test_engine_and_warehouse_paths_agree_on_a_simulated_month(tmp_path: Path) -> None:
    """``--events`` (engine on the spot) and ``--data-dir`` (what the engine stored) give one report."""
    from rules.engine import Engine
    from schemas.events import CHINA_TZ, InvalidEvent, decode_event
    from streams.embedded import run_events
    from warehouse import Sink, open_warehouse

    events = _simulate(tmp_path)
    inp = load_from_events(events, MONTH)
    a = build(inp.facts, inp.findings, inp.events, month=MONTH, generated_at=GEN_AT, generated_by="x", source=SOURCE)
    assert a.input_rows["case_facts"] > 300 and a.windows[0].rank == 1
    assert sum(len(v) for v in a.details.values()) > 0

    engine = Engine.default()
    items = []
    for line in events.read_bytes().splitlines():
        ev = decode_event(line)
        if not isinstance(ev, InvalidEvent):
            items.append((ev, line, ev.occurred_at.astimezone(CHINA_TZ)))
    result = run_events(engine, [it[0] for it in items], until=max(a.end, max(it[0].occurred_at for it in items)))
    wh = open_warehouse(str(tmp_path / "wh"))
    try:
        wh.migrate()
        with Sink(wh, max_seconds=0) as sink:
            sink.add_events(items)
            sink.add_facts(engine.facts(st) for st in result.states.values())
            sink.add_findings(result.findings)
        stored = load_from_warehouse(wh, MONTH)
    finally:
        wh.close()
    b = build(stored.facts, stored.findings, stored.events, month=MONTH, generated_at=GEN_AT, generated_by="x",
              source=SOURCE)
    assert b.data_sha256 == a.data_sha256
    _same_report(a, b)


def test_bench_export_small() -> None:
    from bench.export import bench_export

    r = bench_export(cases=3000, use_warehouse=False)
    assert r["cases"] == 3000 and r["facts_rows"] == 3000 and r["ok"]
    assert set(r) >= {"seconds", "cpu_seconds", "cases", "load_seconds", "build_seconds", "xlsx_seconds", "csv_seconds"}
    assert r["windows"] > 6 and r["detail_rows"] > 0
    assert isinstance(r["seconds"], float) and Decimal(str(r["seconds"])) > 0
