"""Warehouse contract tests: the same tests on chDB and on a real ClickHouse server (18.16 here).

Each test gets a fresh, migrated warehouse: a new chDB directory, or a new database on the server the
session fixture started. What is checked is what other parts rely on: every input line stored once
(valid, or invalid with its reason), retries and replays changing nothing (base tables *and*
materialized aggregates), times staying instants end to end, parameters staying values, personal data
staying out of findings, and the read functions answering what their names say.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from rules.facts import CaseFacts
from rules.findings import Finding, Note, finding_id
from schemas.events import CHINA_TZ, EVENT_TYPES
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - session fixture
from warehouse import Sink, WarehouseError, open_warehouse
from warehouse.base import migration_files
from warehouse.reads import (
    case_history,
    cases_overdue_now,
    counts,
    findings_for_period,
    month_bounds,
    window_monthly_figures,
)
from warehouse.synthetic import Synthetic, feed, generate
from warehouse.tables import TABLES

_db = itertools.count()
MIGRATIONS = [name for name, _, _ in migration_files()]
assert MIGRATIONS[:2] == ["0001_base_tables", "0002_daily_aggregates"]


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def wh(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "chdb":
        w = open_warehouse(str(tmp_path / "data"))
    else:
        url = request.getfixturevalue("clickhouse_server")
        w = open_warehouse(f"{url}/esup_t{os.getpid()}_{next(_db)}")
    assert w.migrate() == MIGRATIONS
    yield w
    w.close()


@pytest.fixture(scope="module")
def syn() -> Synthetic:
    return generate(6000, seed=11, spread_days=45)


def _store(wh: Any, steps: list[Any], max_rows: int = 1500, run_id: str = "live") -> Sink:
    sink = Sink(wh, max_rows=max_rows, max_seconds=0)
    feed(sink, steps, chunk=400, run_id=run_id)
    sink.close()
    return sink


def _precision(wh: Any) -> timedelta:
    return timedelta(milliseconds=1) if wh.dialect.datetime64 else timedelta(seconds=1)


def _trunc(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((t - epoch) // step) * step


def _facts(case_id: str, version: int = 1, **kw: Any) -> CaseFacts:
    base: dict[str, Any] = dict(
        status="accepted", item_code="ZJ-001", item_name="建筑工程施工许可", item_kind="promised",
        department="住建局", window="住建窗口", region_code="330102", catalog_version="2026.11",
        applicant_name=None, applicant_id_number=None, applicant_phone=None, officers=("OFF-1",),
        submitted_at=None, accepted_at=None, clock_start_at=None, promised_due_at=None, statutory_due_at=None,
        decided_at=None, outcome=None, completed_at=None, delivered_at=None, paused_working_days=0,
        supplement_count=0, extension_days=0, fee_assessed=Decimal(0), fee_paid=Decimal(0),
        fee_waived=Decimal(0), fee_refunded=Decimal(0), rating_level=None, complaint_count=0, on_time=None,
        last_event_at=datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ))
    base.update(kw)
    return CaseFacts(case_id=case_id, version=version, **base)


def _finding(case_id: str, rule: str = "FEE.CASH_AT_WINDOW", occurrence: str = "e1", *,
             fired_at: datetime | None = None, message: str = "窗口收取现金", department: str = "住建局",
             region: str = "330102") -> Finding:
    return Finding(finding_id=finding_id(case_id, rule, occurrence), rule=rule, severity="red", case_id=case_id,
                   item_code="ZJ-001", department=department, window="住建窗口", region_code=region,
                   officer_id="OFF-1", fired_at=fired_at or datetime(2026, 3, 5, 10, 0, tzinfo=CHINA_TZ),
                   message=message, basis="行政许可法", catalog_version="2026.11", occurrence=occurrence)


# ------------------------------------------------------------------------------------------- schema


def test_migrate_is_idempotent_and_matches_the_python_column_lists(wh: Any) -> None:
    assert wh.migrate() == []
    assert wh.migrate() == []
    for table, spec in TABLES.items():
        rows = wh.query("SELECT name, default_kind FROM system.columns "
                        "WHERE database = currentDatabase() AND table = {t:String}", {"t": table})
        stored = [r["name"] for r in rows if r["default_kind"] != "MATERIALIZED"]
        assert stored == [name for name, _ in spec], table


def test_a_changed_migration_is_refused(wh: Any) -> None:
    wh.insert_columns("schema_migrations", {"name": ["0001_base_tables"], "checksum": ["0000000000000000"],
                                            "applied_at": [datetime.now(UTC)]})
    with pytest.raises(WarehouseError, match="changed after it was applied"):
        wh.migrate()


# -------------------------------------------------------------------------------------------- times


def test_times_are_instants_end_to_end(wh: Any) -> None:
    """Offsets in, instants stored, aware datetimes out; dates and months are China's."""
    step = _precision(wh)
    times = {
        "accepted_at": datetime(2026, 3, 31, 16, 30, 0, 123456, tzinfo=UTC),  # 2026-04-01 00:30 in China
        "submitted_at": datetime(2026, 3, 31, 11, 0, tzinfo=timezone(timedelta(hours=-5))),
        "completed_at": datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=CHINA_TZ),
        "last_event_at": datetime(2038, 1, 19, 11, 14, 7, tzinfo=CHINA_TZ),  # past 32-bit epoch seconds
    }
    wh.insert_columns("case_facts", _cols([_facts("T-1", **times)]))
    row = wh.query("SELECT accepted_at, submitted_at, completed_at, last_event_at, toDate(accepted_at) AS d, "
                   "toYYYYMM(accepted_at) AS m FROM case_facts FINAL WHERE case_id = 'T-1'")[0]
    for name, value in times.items():
        assert row[name].tzinfo is not None
        assert row[name] == _trunc(value, step), name
    assert row["d"].isoformat() == "2026-04-01"
    assert row["m"] == 202604


def test_naive_datetimes_are_refused(wh: Any) -> None:
    with pytest.raises(ValueError, match="naive"):
        wh.insert_columns("case_facts", _cols([_facts("N-1", last_event_at=datetime(2026, 3, 2, 9, 0))]))
    with pytest.raises(ValueError, match="naive"):
        findings_for_period(wh, datetime(2026, 3, 1), datetime(2026, 4, 1, tzinfo=CHINA_TZ))


def test_parameters_are_values_never_sql(wh: Any) -> None:
    nasty = "x' OR 1=1 -- %s %(a)s {b:String} \\ '; DROP TABLE events; --"
    assert wh.query("SELECT {s:String} AS s", {"s": nasty}) == [{"s": nasty}]
    wh.insert_columns("findings", _finding_cols([("live", _finding("P-1"))]))
    start, end = month_bounds("2026-03")
    assert findings_for_period(wh, start, end, department=nasty) == []
    assert len(findings_for_period(wh, start, end, department="住建局")) == 1
    assert wh.query("SELECT count() AS n FROM events")[0]["n"] == 0  # still there
    with pytest.raises(TypeError):
        wh.query("SELECT {n:UInt32} AS n", {"n": "1"})
    with pytest.raises(KeyError):
        wh.query("SELECT {n:UInt32} AS n", {})


# ---------------------------------------------------------------------------------- idempotent writes


def test_every_line_is_stored_once_valid_or_with_its_reason(wh: Any, syn: Synthetic) -> None:
    _store(wh, syn.steps)
    c = counts(wh)
    assert c["events"] == syn.distinct_lines
    assert c["events_invalid"] == syn.invalid_lines > 0
    assert c["case_facts"] == syn.cases
    assert c["findings"] == len(syn.finding_ids) > 0
    assert c["notes"] == syn.notes > 0
    errors = wh.query("SELECT error, event_type FROM events FINAL WHERE valid = 0")
    assert all(r["error"] for r in errors)
    assert any("malformed JSON" in r["error"] for r in errors) and any("$.level" in r["error"] for r in errors)
    valid = wh.query("SELECT uniqExact(event_id) AS n FROM events WHERE valid = 1")[0]["n"]
    assert valid == syn.valid_events


def _snapshot(wh: Any) -> dict[str, Any]:
    """Everything a retry or replay must not change: logical contents of tables and aggregates."""
    return {
        "counts": {k: v for k, v in counts(wh).items() if k in TABLES or k == "events_invalid"},
        "facts": wh.query("SELECT case_id, version, status, completed_at FROM case_facts FINAL ORDER BY case_id"),
        "findings": wh.query("SELECT run_id, finding_id, fired_at FROM findings FINAL ORDER BY run_id, finding_id"),
        "case_metrics": wh.query(
            "SELECT day, department, window, region_code, item_kind, metric, uniqExactMerge(cases) AS n "
            "FROM daily_case_metrics GROUP BY day, department, window, region_code, item_kind, metric "
            "ORDER BY day, department, window, region_code, item_kind, metric"),
        "finding_metrics": wh.query(
            "SELECT run_id, day, department, window, rule, uniqExactMerge(findings) AS f, uniqExactMerge(cases) AS c "
            "FROM daily_findings GROUP BY run_id, day, department, window, rule "
            "ORDER BY run_id, day, department, window, rule"),
    }


class _Recorder:
    """Passes writes through and remembers them, so a test can retry exactly what was written."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.parts = inner, []

    def __getattr__(self, name: str) -> Any:  # query, prepare_events, dialect …
        return getattr(self.inner, name)

    def prepare(self, table: str, columns: dict[str, list[Any]]) -> Any:
        return self.inner.prepare(table, columns)

    def write(self, prepared: Any) -> None:
        self.inner.write(prepared)
        self.parts.append(prepared)


def test_retried_batches_and_replayed_streams_change_nothing(wh: Any, syn: Synthetic) -> None:
    rec = _Recorder(wh)
    _store(rec, syn.steps)
    first = _snapshot(wh)
    _store(wh, syn.steps)  # the same stream replayed
    assert _snapshot(wh) == first
    for part in rec.parts[3:9]:  # batches retried after an unknown outcome
        wh.write(part)
    assert _snapshot(wh) == first
    physical = wh.query("SELECT count() AS n FROM events")[0]["n"]
    assert physical >= first["counts"]["events"]  # duplicates may wait for a merge; reads never show them


def test_a_replay_with_other_batch_boundaries_changes_nothing_that_is_final(wh: Any, syn: Synthetic) -> None:
    """Other boundaries store other intermediate case versions; every count keyed by a date that is fixed
    once set stays the same ('received' can move when a submission arrives after its acceptance)."""
    _store(wh, syn.steps)
    first = _snapshot(wh)
    _store(wh, syn.steps, max_rows=2222)
    again = _snapshot(wh)
    for key in ("counts", "facts", "findings", "finding_metrics"):
        assert again[key] == first[key], key
    stable = [r for r in first["case_metrics"] if r["metric"] != "received"]
    assert [r for r in again["case_metrics"] if r["metric"] != "received"] == stable


def test_latest_case_version_wins_whatever_the_arrival_order(wh: Any, syn: Synthetic) -> None:
    steps = [s for s in syn.steps if s.facts is not None]
    reordered = steps[len(steps) // 2:] + steps[: len(steps) // 2]
    _store(wh, list(reversed(reordered)), max_rows=700)
    got = {r["case_id"]: r["version"] for r in wh.query("SELECT case_id, version FROM case_facts FINAL")}
    assert got == syn.final_versions


def _wait_for_events(wh: Any, failure: str, seconds: float = 20) -> None:
    """Poll until the warehouse holds events (written by the sink's timer); fail with ``failure``."""
    deadline = time.monotonic() + seconds
    while counts(wh)["events"] == 0:
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


class FailingWrites:
    """The warehouse, except that its first write (of ``table`` only, if given) raises ``error``."""

    def __init__(self, inner: Any, error: Exception, table: str | None = None) -> None:
        self.inner, self.error, self.table, self.failures = inner, error, table, 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, prepared: Any) -> None:
        if self.failures and self.table in (None, prepared[0]):
            self.failures -= 1
            raise self.error
        self.inner.write(prepared)


def test_a_failed_write_is_kept_and_written_once_later(wh: Any, syn: Synthetic) -> None:
    sink = Sink(FailingWrites(wh, ConnectionError("network down"), table="case_facts"), max_rows=10**6,
                max_seconds=0)
    feed(sink, syn.steps[:2000])
    with pytest.raises(ConnectionError):
        sink.flush()
    feed(sink, syn.steps[2000:])
    sink.close()
    c = counts(wh)
    assert (c["events"], c["case_facts"], c["findings"]) == (syn.distinct_lines, syn.cases, len(syn.finding_ids))


def test_a_failed_batch_is_retried_on_time_without_new_rows(wh: Any, syn: Synthetic) -> None:
    sink = Sink(FailingWrites(wh, ConnectionError("ClickHouse restarting")), max_rows=10**6, max_seconds=0.3)
    try:
        sink.add_events([s.item for s in syn.steps[:80]])
        _wait_for_events(wh, "the failed batch was never written again")
    finally:
        sink.close()  # nothing is left unwritten, so the transient failure is not raised any more
    assert counts(wh)["events"] == len({s.item[1] for s in syn.steps[:80]})


def test_the_sink_flushes_on_time_when_nothing_else_happens(wh: Any, syn: Synthetic) -> None:
    sink = Sink(wh, max_rows=10**6, max_seconds=0.3)
    try:
        sink.add_events([s.item for s in syn.steps[:50]])
        _wait_for_events(wh, "the timed flush never happened")
    finally:
        sink.close()
    assert counts(wh)["events"] == len({s.item[1] for s in syn.steps[:50]})


def test_findings_of_runs_never_mix(wh: Any) -> None:
    live = [_finding("R-1", occurrence="a"), _finding("R-2", occurrence="b")]
    replay = [_finding("R-1", occurrence="a"), _finding("R-3", occurrence="c")]
    sink = Sink(wh, max_seconds=0)
    sink.add_findings(live)
    sink.add_findings(replay, run_id="replay-2026-03")
    sink.close()
    start, end = month_bounds("2026-03")
    got_live = findings_for_period(wh, start, end)
    got_replay = findings_for_period(wh, start, end, run_id="replay-2026-03")
    assert sorted(f["case_id"] for f in got_live) == ["R-1", "R-2"]
    assert sorted(f["case_id"] for f in got_replay) == ["R-1", "R-3"]
    assert {f["run_id"] for f in got_live} == {"live"}
    per_run = wh.query("SELECT run_id, uniqExactMerge(findings) AS n FROM daily_findings GROUP BY run_id ORDER BY run_id")
    assert per_run == [{"run_id": "live", "n": 2}, {"run_id": "replay-2026-03", "n": 2}]


def test_personal_data_never_reaches_findings_or_notes(wh: Any) -> None:
    case_id = "330102202603050000123"  # 21 digits: a case number, not personal data
    facts = _facts(case_id, applicant_name="张三丰", applicant_id_number="11010519491231002X",
                   applicant_phone="13812345678")
    msg = f"办件 {case_id} 申请人张三丰（身份证 11010519491231002X，电话 13812345678）在窗口缴现金。"
    sink = Sink(wh, max_seconds=0)
    sink.add_facts([facts])
    sink.add_findings([_finding(case_id, message=msg)])
    sink.add_notes([Note(kind="no_intake", case_id=case_id, event_id="e9", message="联系 13912345678 张三丰")])
    sink.close()
    stored = wh.query("SELECT message FROM findings FINAL")[0]["message"]
    note = wh.query("SELECT message FROM notes FINAL")[0]["message"]
    for secret in ("张三丰", "11010519491231002X", "13812345678"):
        assert secret not in stored
    assert "13912345678" not in note and "张三丰" not in note
    assert case_id in stored and "张**" in stored and "110105********002X" in stored and "138****5678" in stored
    # the facts keep them: that is where they are needed
    assert wh.query("SELECT applicant_phone FROM case_facts FINAL")[0]["applicant_phone"] == "13812345678"


# --------------------------------------------------------------------------------------------- reads


def test_cases_overdue_now(wh: Any) -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=CHINA_TZ)
    past, future = now - timedelta(days=1), now + timedelta(days=1)
    rows = [
        _facts("O-promised", promised_due_at=past, statutory_due_at=future, accepted_at=past - timedelta(days=9)),
        _facts("O-statutory", promised_due_at=past, statutory_due_at=past),
        _facts("O-fine", promised_due_at=future, statutory_due_at=future),
        _facts("O-done", status="completed", promised_due_at=past, completed_at=past),
        _facts("O-decided", status="decided", promised_due_at=None, statutory_due_at=past),
        _facts("O-paused", status="paused", promised_due_at=None, statutory_due_at=None),
        _facts("O-spot", item_kind="on_the_spot", clock_start_at=datetime(2026, 3, 9, 16, 0, tzinfo=CHINA_TZ)),
        _facts("O-spot-today", item_kind="on_the_spot", clock_start_at=datetime(2026, 3, 10, 9, 0, tzinfo=CHINA_TZ)),
        # an older version was overdue; the current one is completed
        _facts("O-later", version=1, promised_due_at=past),
        _facts("O-later", version=2, status="completed", promised_due_at=past, completed_at=past),
    ]
    wh.insert_columns("case_facts", _cols(rows[:-1]))
    wh.insert_columns("case_facts", _cols(rows[-1:]))
    got = {r["case_id"]: r["overdue_kind"] for r in cases_overdue_now(wh, now)}
    assert got == {"O-promised": "promised", "O-statutory": "statutory", "O-spot": "on_the_spot"}
    assert all("applicant_name" not in r for r in cases_overdue_now(wh, now))


def _final_facts(syn: Synthetic) -> dict[str, CaseFacts]:
    out: dict[str, CaseFacts] = {}
    for s in syn.steps:
        if s.facts is not None:
            out[s.facts.case_id] = s.facts
    return out


def _expected_figures(syn: Synthetic, month: str, region: str | None) -> dict[tuple[str, str], dict[str, int]]:
    start, end = month_bounds(month)
    facts = _final_facts(syn)
    exp: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def inside(t: datetime | None) -> bool:
        return t is not None and start <= t < end

    for f in facts.values():
        if region is not None and f.region_code != region:
            continue
        row = exp[(f.department or "", f.window or "")]
        row["received"] += inside(f.submitted_at or f.accepted_at)
        row["accepted"] += inside(f.accepted_at)
        if inside(f.completed_at):
            row["completed"] += 1
            row["completed_on_time"] += f.on_time is True
            row["on_the_spot_completed"] += f.item_kind == "on_the_spot"
            row["on_the_spot_same_day"] += f.item_kind == "on_the_spot" and f.on_time is True
        if inside(f.promised_due_at) and f.status not in ("rejected", "withdrawn") and not (
                f.completed_at is not None and f.completed_at <= f.promised_due_at):
            row["overdue"] += 1
    seen: set[str] = set()
    kinds = {"intake_rejected": "intake_rejections", "supplement_requested": "supplements", "rated": "ratings",
             "complaint_filed": "complaints"}
    for s in syn.steps:
        e = s.item[0]
        if type(e) not in EVENT_TYPES.values() or e.event_id in seen or not inside(e.occurred_at):
            continue
        seen.add(e.event_id)
        f = facts.get(e.case_id)
        tag = type(e).__struct_config__.tag
        if f is None or tag not in kinds or (region is not None and f.region_code != region):
            continue
        row = exp[(f.department or "", f.window or "")]
        row[kinds[tag]] += 1
        row["ratings_good"] += tag == "rated" and e.level >= 4
    for s in syn.steps:
        for g in s.findings:
            if inside(g.fired_at) and (region is None or g.region_code == region):
                cat = g.rule.split(".")[0].lower()
                exp[(g.department or "", g.window or "")][f"{cat}_findings"] += 1
    return exp


@pytest.mark.parametrize("region", [None, "330105"])
def test_window_monthly_figures_match_the_input(wh: Any, syn: Synthetic, region: str | None) -> None:
    _store(wh, syn.steps)
    month = "2026-03"
    got = window_monthly_figures(wh, month, region=region, now=datetime(2026, 6, 1, tzinfo=CHINA_TZ))
    exp = _expected_figures(syn, month, region)
    assert {(r["department"], r["window"]) for r in got} == {k for k, v in exp.items() if any(v.values())}
    for r in got:
        e = exp[(r["department"], r["window"])]
        for k in ("received", "accepted", "completed", "completed_on_time", "on_the_spot_completed",
                  "on_the_spot_same_day", "overdue", "intake_rejections", "supplements", "ratings",
                  "ratings_good", "complaints", "fee_findings", "procedure_findings", "timeout_findings",
                  "quality_findings"):
            assert r[k] == e.get(k, 0), (r["department"], r["window"], k)
        if r["ratings"]:
            assert r["ratings_good_share"] == pytest.approx(r["ratings_good"] / r["ratings"])
    assert sum(r["completed"] for r in got) > 0 and sum(r["ratings"] for r in got) > 0


def test_daily_aggregates_agree_with_the_base_tables(wh: Any, syn: Synthetic) -> None:
    _store(wh, syn.steps)
    start, end = month_bounds("2026-03")
    mv = wh.query(
        "SELECT department, window, metric, uniqExactMerge(cases) AS n FROM daily_case_metrics "
        "WHERE day >= {a:Date} AND day < {b:Date} GROUP BY department, window, metric",
        {"a": start.date(), "b": end.date()})
    by = {(r["department"], r["window"], r["metric"]): r["n"] for r in mv}
    figures = window_monthly_figures(wh, "2026-03", now=end)
    for r in figures:
        for metric in ("received", "accepted", "completed", "completed_on_time", "on_the_spot_completed",
                       "on_the_spot_same_day"):
            assert by.get((r["department"], r["window"], metric), 0) == r[metric], metric


def test_case_history_tells_the_whole_story(wh: Any, syn: Synthetic) -> None:
    _store(wh, syn.steps)
    dup_cases = {n.case_id for s in syn.steps for n in s.notes}
    found_cases = {f.case_id: f for s in syn.steps for f in s.findings if f.event_id}
    case_id = next(c for c in found_cases if c in dup_cases) if dup_cases & found_cases.keys() \
        else next(iter(found_cases))
    finding = found_cases[case_id]
    at = datetime(2026, 3, 20, 9, 0, tzinfo=CHINA_TZ)
    wh.insert("alert_deliveries", [
        {"delivery_id": "d1", "attempt": 1, "result": "retry", "alert_id": finding.finding_id,
         "finding_ids": [finding.finding_id], "recipient": "jc-office", "channel": "sms", "kind": "finding",
         "attempted_at": at, "error": "gateway timeout"},
        {"delivery_id": "d1", "attempt": 2, "result": "ok", "alert_id": finding.finding_id,
         "finding_ids": [finding.finding_id], "recipient": "jc-office", "channel": "sms", "kind": "finding",
         "attempted_at": at + timedelta(minutes=1)},
    ])
    wh.insert("alert_lifecycle", [
        {"alert_id": finding.finding_id, "version": 1, "status": "open", "severity": finding.severity,
         "changed_at": at, "finding_ids": [finding.finding_id]},
        {"alert_id": finding.finding_id, "version": 2, "status": "acknowledged", "severity": finding.severity,
         "changed_at": at + timedelta(hours=1), "actor": "inspector-7", "reason": "已督办"},
    ])
    h = case_history(wh, case_id)
    lines = [s.item for s in syn.steps if getattr(s.item[0], "case_id", None) == case_id]
    assert h["facts"]["version"] == syn.final_versions[case_id]
    assert [e["occurred_at"] for e in h["events"]] == sorted(e["occurred_at"] for e in h["events"])
    assert {e["raw"] for e in h["events"]} == {raw for _, raw, _ in lines}
    assert len(h["events"]) == len({raw for _, raw, _ in lines})
    with_finding = [e for e in h["events"] if e["findings"]]
    assert with_finding and with_finding[0]["event_id"] == finding.event_id
    f = next(x for x in h["findings"] if x["finding_id"] == finding.finding_id)
    assert [(d["attempt"], d["result"]) for d in f["deliveries"]] == [(1, "retry"), (2, "ok")]
    assert [a["status"] for a in f["alerts"]] == ["open", "acknowledged"]
    if case_id in dup_cases:
        assert any(e["notes"] and e["notes"][0]["kind"] == "duplicate_event" for e in h["events"])
    assert case_history(wh, "no-such-case")["events"] == []


def test_alert_tables_are_idempotent_and_checked(wh: Any) -> None:
    at = datetime(2026, 3, 20, 9, 0, tzinfo=CHINA_TZ)
    rows = [{"delivery_id": "d1", "attempt": 1, "result": "pending", "attempted_at": at, "channel": "email"},
            {"delivery_id": "d1", "attempt": 1, "result": "ok", "attempted_at": at, "channel": "email"},
            {"delivery_id": "d2", "attempt": 1, "result": "failed", "attempted_at": at, "digest": True,
             "finding_ids": ["f1", "f2"], "error": "550 mailbox unavailable"}]
    wh.insert("alert_deliveries", rows)
    wh.insert("alert_deliveries", rows)
    assert counts(wh)["alert_deliveries"] == 3
    assert wh.query("SELECT uniqExactMerge(deliveries) AS n FROM daily_deliveries")[0]["n"] == 2
    with pytest.raises(ValueError, match="unknown column"):
        wh.insert("alert_deliveries", [{**rows[0], "recipient_phone": "13812345678"}])
    with pytest.raises(ValueError, match="missing"):
        wh.insert("alert_lifecycle", [{"alert_id": "a1", "status": "open", "changed_at": at}])
    with pytest.raises(ValueError, match="not in"):
        wh.insert("alert_lifecycle", [{"alert_id": "a1", "version": 1, "status": "closed", "changed_at": at}])
    with pytest.raises(ValueError, match="unknown table"):
        wh.insert("events; DROP TABLE events", [{}])


# -------------------------------------------------------------------------------------------- helpers


def _cols(facts: Any) -> dict[str, list[Any]]:
    from warehouse.rows import facts_columns

    return facts_columns(list(facts))


def _finding_cols(items: list[tuple[str, Finding]]) -> dict[str, list[Any]]:
    from warehouse.rows import findings_columns

    return findings_columns(items)


def _event_cols(items: list[Any]) -> dict[str, list[Any]]:
    from warehouse.rows import event_columns

    return event_columns(items)


def test_msgspec_structs_survive_the_round_trip(wh: Any) -> None:
    """A stored finding reads back into the engine's own type, field for field."""
    f = _finding("RT-1", message="普通说明")
    sink = Sink(wh, max_seconds=0)
    sink.add_findings([f])
    sink.close()
    row = findings_for_period(wh, *month_bounds("2026-03"))[0]
    back = msgspec.convert({k: row[k] for k in Finding.__struct_fields__}, Finding)
    assert back == f
