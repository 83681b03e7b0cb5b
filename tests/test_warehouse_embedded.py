"""What only the embedded (chDB) warehouse has to get right, and the warehouse's pure helpers.

One process per data directory (a clear error, not a hang, for the second), no use after fork, a
SIGKILL in the middle of a run followed by a re-run of the same input leaving exactly what a clean run
leaves, the command line, DDL rendering for clusters and old servers, and parameter binding.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.events import CHINA_TZ
from tests.warehouse_servers import absent_server_action
from warehouse import Sink, WarehouseError, WarehouseLocked, open_warehouse
from warehouse.base import migration_files
from warehouse.reads import counts
from warehouse.sql import LEGACY, MODERN, bind, dialect_for_version, render
from warehouse.synthetic import feed, generate

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


# ------------------------------------------------------------------------------------ one process


def test_a_second_process_gets_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(_python("""
        import sys, time
        sys.path.insert(0, sys.argv[1])
        from warehouse import open_warehouse
        wh = open_warehouse(sys.argv[2]); wh.migrate()
        print("ready", flush=True)
        time.sleep(60)
        """, str(ROOT), str(data)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        with pytest.raises(WarehouseLocked) as err:
            open_warehouse(str(data))
        assert time.monotonic() - t0 < 5
        message = str(err.value)
        assert str(data.resolve()) in message and f"PID {holder.pid}" in message
        assert "another esup process" in message
        # the command line says the same, with exit code 1
        result = CliRunner().invoke(_app(), ["db", "counts", "--target", str(data)])
        assert result.exit_code == 1 and "another esup process" in result.output
    finally:
        holder.kill()
        holder.wait()
    with open_warehouse(str(data)) as wh:  # the lock dies with its process
        assert counts(wh)["events"] == 0


def test_one_directory_per_process_shared_by_its_users(tmp_path: Path) -> None:
    a = open_warehouse(str(tmp_path / "a"))
    try:
        a.migrate()
        with pytest.raises(WarehouseError, match="one data directory per process|already has"):
            open_warehouse(str(tmp_path / "b"))
        again = open_warehouse(f"chdb:{tmp_path / 'a'}")
        again.close()  # closing one user must not close the engine under the other
        assert counts(a)["events"] == 0
    finally:
        a.close()
    b = open_warehouse(f"chdb://{tmp_path / 'b'}")  # once closed, another directory opens
    b.close()


def test_no_use_after_fork(tmp_path: Path) -> None:
    wh = open_warehouse(str(tmp_path / "data"))
    try:
        pid = os.fork()
        if pid == 0:  # child: must refuse, clearly, without touching chDB
            code = 1
            try:
                wh.query("SELECT 1 AS x")
            except WarehouseError as exc:
                code = 0 if "fork" in str(exc) else 2
            except BaseException:  # noqa: BLE001
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert wh.query("SELECT 1 AS x") == [{"x": 1}]
    finally:
        wh.close()


def test_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    with open_warehouse() as wh:
        assert wh.kind == "chdb" and wh.path == (tmp_path / "data").resolve()
    with open_warehouse(f"chdb://{tmp_path}/x") as wh:
        assert wh.path == (tmp_path / "x").resolve()
    with pytest.raises(WarehouseError, match="unknown warehouse target"):
        open_warehouse("postgres://localhost/db")
    monkeypatch.setenv("CLICKHOUSE_URL", "clickhouse://127.0.0.1:1/db")
    with pytest.raises(WarehouseError, match="cannot reach ClickHouse at clickhouse://127.0.0.1:1/db"):
        open_warehouse()


# --------------------------------------------------------------------------------- kill and re-run

_STORE = """
    import sys
    sys.path.insert(0, sys.argv[1])
    from warehouse import Sink, open_warehouse
    from warehouse.synthetic import feed, generate
    syn = generate(int(sys.argv[3]), seed=5)
    wh = open_warehouse(sys.argv[2]); wh.migrate()
    sink = Sink(wh, max_rows=1000, max_seconds=0)
    for i in range(0, len(syn.steps), 250):
        feed(sink, syn.steps[i:i + 250], chunk=250)
        print(sink.written["batches"], flush=True)
    sink.close()
    wh.close()
    print("done", flush=True)
"""


def _snapshot(target: Path) -> dict[str, Any]:
    with open_warehouse(str(target)) as wh:
        return {
            "counts": {k: v for k, v in counts(wh).items() if not k.startswith("daily_")},
            "events": wh.query("SELECT case_id, occurred_at, event_id, valid, error, hex(raw) AS raw FROM events FINAL "
                               "ORDER BY case_id, occurred_at, event_id, raw"),
            "facts": wh.query("SELECT * FROM case_facts FINAL ORDER BY case_id"),
            "findings": wh.query("SELECT * FROM findings FINAL ORDER BY run_id, finding_id"),
            "notes": wh.query("SELECT * FROM notes FINAL ORDER BY run_id, case_id, event_id, kind"),
            "case_metrics": wh.query(
                "SELECT day, department, window, region_code, item_kind, metric, uniqExactMerge(cases) AS n "
                "FROM daily_case_metrics GROUP BY day, department, window, region_code, item_kind, metric "
                "ORDER BY day, department, window, region_code, item_kind, metric"),
            "finding_metrics": wh.query(
                "SELECT run_id, day, department, window, rule, uniqExactMerge(findings) AS n FROM daily_findings "
                "GROUP BY run_id, day, department, window, rule ORDER BY run_id, day, department, window, rule"),
        }


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_input_again_leaves_what_a_clean_run_leaves(tmp_path: Path) -> None:
    n = "30000"
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_python(_STORE, str(ROOT), str(killed), n), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "done":
            pytest.fail("the run finished before it could be killed; give it more input")
        if int(line) >= 6:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _snapshot(killed)["counts"]
    syn = generate(int(n), seed=5)
    assert 0 < partial["events"] < syn.distinct_lines  # it really died in the middle
    for target in (killed, clean):
        out = subprocess.run(_python(_STORE, str(ROOT), str(target), n), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0 and out.stdout.strip().endswith("done"), out.stderr[-2000:]
    after_kill, reference = _snapshot(killed), _snapshot(clean)
    assert after_kill["counts"] == reference["counts"]
    assert reference["counts"]["events"] == syn.distinct_lines
    assert reference["counts"]["events_invalid"] == syn.invalid_lines
    assert reference["counts"]["case_facts"] == syn.cases
    assert reference["counts"]["findings"] == len(syn.finding_ids)
    for key in ("events", "facts", "findings", "notes", "case_metrics", "finding_metrics"):
        assert after_kill[key] == reference[key], key
    assert {r["case_id"]: r["version"] for r in reference["facts"]} == syn.final_versions


# ------------------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_bench_warehouse_runs_and_stores_everything() -> None:
    from bench.warehouse import bench_warehouse

    result = bench_warehouse(30_000)
    assert result["correct"] is True
    assert result["events_per_s"] > 0 and result["bytes_per_event"] > 0


# ------------------------------------------------------------------------------------ command line


def _app() -> Any:
    from esup.cli import app

    return app


def test_db_migrate_and_counts_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    target = str(tmp_path / "data")
    first = runner.invoke(_app(), ["db", "migrate", "--target", target, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["applied"] == [name for name, _, _ in migration_files()]
    second = runner.invoke(_app(), ["db", "migrate", "--target", target])
    assert second.exit_code == 0 and "无需迁移" in second.output
    c = runner.invoke(_app(), ["db", "counts", "--target", target, "--json"])
    assert c.exit_code == 0 and json.loads(c.output)["events"] == 0
    printed = runner.invoke(_app(), ["db", "migrate", "--print", "--dialect", "legacy", "--cluster", "prov"])
    assert printed.exit_code == 0
    assert "ON CLUSTER prov" in printed.output and "ReplicatedReplacingMergeTree(" in printed.output
    assert "DateTime64" not in printed.output and "LowCardinality" not in printed.output


# ------------------------------------------------------------------------------ DDL and parameters


def test_render_for_old_servers_and_clusters() -> None:
    stmt = ("CREATE TABLE IF NOT EXISTS case_facts {{ON_CLUSTER}} (t {{DT}}, s {{LC}}, n {{LCN}}, raw String {{ZSTD}}) "
            "ENGINE = ReplacingMergeTree(version) ORDER BY case_id")
    modern = render(stmt, MODERN)
    assert "DateTime64(3, 'Asia/Shanghai')" in modern and "LowCardinality(Nullable(String))" in modern
    assert "CODEC(ZSTD(1))" in modern and "ON CLUSTER" not in modern
    legacy = render(stmt, LEGACY, cluster="prov", database="esup")
    assert "DateTime('Asia/Shanghai')" in legacy and "LowCardinality" not in legacy and "CODEC" not in legacy
    assert "case_facts ON CLUSTER prov" in legacy
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/esup/case_facts', '{replica}', "
            "version)") in legacy
    with pytest.raises(ValueError):
        render(stmt, MODERN, cluster="prov; DROP")
    assert dialect_for_version("18.16.1") is LEGACY and dialect_for_version("24.8.3.59") is MODERN
    assert not dialect_for_version("20.1.16").part_settings and dialect_for_version("20.1.16").datetime64


def test_a_guarded_statement_exists_only_where_the_server_can_run_it() -> None:
    stmt = "{{IF_PART_SETTINGS}} ALTER TABLE events {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 1"
    assert render(stmt, MODERN, cluster="prov") == "ALTER TABLE events ON CLUSTER prov MODIFY SETTING min_bytes_for_wide_part = 1"
    assert render(stmt, LEGACY) == "" and render(stmt, dialect_for_version("20.1.16")) == ""
    with pytest.raises(ValueError, match="unknown DDL guard"):
        render("{{IF_TIME_TRAVEL}} SELECT 1", MODERN)
    runner = CliRunner()
    legacy = runner.invoke(_app(), ["db", "migrate", "--print", "--dialect", "legacy"])
    modern = runner.invoke(_app(), ["db", "migrate", "--print", "--dialect", "modern"])
    assert legacy.exit_code == 0 and modern.exit_code == 0
    assert "min_bytes_for_wide_part" not in legacy.output and "IF_" not in legacy.output
    assert modern.output.count("MODIFY SETTING min_bytes_for_wide_part = 134217728") == 7


def test_a_sink_batch_is_one_compact_part_not_a_file_per_column(tmp_path: Path) -> None:
    """Migration 0004: a batch of lines and one of case facts are written as compact parts (one data
    file), where the wide format made 61 and 148 files per part."""
    wh = open_warehouse(str(tmp_path / "data"))
    try:
        wh.migrate()
        with Sink(wh, max_rows=100_000, max_seconds=0, chain=False) as sink:
            feed(sink, generate(40_000, seed=5, spread_days=10).steps)
        parts = wh.query("SELECT table, part_type, rows FROM system.parts WHERE database = currentDatabase() "
                         "AND active AND table IN ('events', 'case_facts')")
        assert {p["table"] for p in parts} == {"events", "case_facts"}
        assert {p["part_type"] for p in parts} == {"Compact"}
        assert sum(p["rows"] for p in parts if p["table"] == "events") > 35_000
    finally:
        wh.close()


def test_bind_turns_placeholders_into_each_backends_form() -> None:
    at = datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=CHINA_TZ)
    sql = "SELECT 1 WHERE t >= {at:DateTime} AND s = {s:String} AND has({ids:Array(String)}, x) AND d = {d:Date}"
    params = {"at": at, "s": "o'k", "ids": ["a", "b'c"], "d": at.date()}
    text, bound = bind(sql, params, "chdb", MODERN)
    assert "fromUnixTimestamp64Milli({at:Int64}, 'Asia/Shanghai')" in text
    assert bound == {"at": 1772294400500, "s": "o'k", "ids": "['a','b\\'c']", "d": "2026-03-01"}
    text, bound = bind(sql + " AND y LIKE '%x'", params, "server", LEGACY)
    assert "toDateTime(%(at)s, 'Asia/Shanghai')" in text and "LIKE '%%x'" in text
    assert bound is not None and bound["at"] == 1772294400 and bound["ids"] == ["a", "b'c"]
    assert bind("SELECT '%'", None, "server", LEGACY) == ("SELECT '%'", None)
    with pytest.raises(ValueError, match="naive"):
        bind("SELECT {t:DateTime}", {"t": datetime(2026, 3, 1)}, "chdb", MODERN)
    with pytest.raises(TypeError):
        bind("SELECT {t:DateTime}", {"t": "2026-03-01"}, "chdb", MODERN)


def test_ci_treats_a_missing_server_as_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert absent_server_action()[0] == "fail"
    monkeypatch.delenv("CI")
    action, reason = absent_server_action()
    assert action == "skip" and "install-servers.sh" in reason


# ------------------------------------------------------------------------- the chDB fast paths


def _tricky_facts() -> list[Any]:
    from decimal import Decimal

    from rules.facts import CaseFacts

    base = dict(status="completed", item_code="ZJ-001", item_name='名称 "引号" \\ 反斜杠\n换行', item_kind="promised",
                department="住建局", window="住建窗口", region_code="330102", catalog_version="2026.11",
                applicant_name="张三", applicant_id_number="11010519491231002X", applicant_phone="13812345678",
                officers=("OFF-1", "办事员\t2"), submitted_at=datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=CHINA_TZ),
                accepted_at=datetime(2026, 3, 31, 16, 0, tzinfo=timezone(timedelta(hours=0))),
                clock_start_at=datetime(1999, 12, 31, 19, 0, 0, 1000, tzinfo=timezone(timedelta(hours=-5))),
                promised_due_at=None, statutory_due_at=datetime(2040, 1, 1, tzinfo=CHINA_TZ), decided_at=None,
                outcome="approved", completed_at=datetime(2026, 4, 2, 10, 0, tzinfo=CHINA_TZ), delivered_at=None,
                paused_working_days=3, supplement_count=2, extension_days=10, fee_assessed=Decimal("200.5"),
                fee_paid=Decimal("0.0001"), fee_waived=Decimal("1.23456789"), fee_refunded=Decimal("12345678.12"),
                rating_level=None, complaint_count=1, on_time=False,
                last_event_at=datetime(2026, 4, 2, 10, 0, tzinfo=CHINA_TZ))
    plain = {k: None for k in ("item_code", "item_name", "item_kind", "department", "window", "region_code",
                               "catalog_version", "applicant_name", "applicant_id_number", "applicant_phone",
                               "submitted_at", "accepted_at", "clock_start_at", "statutory_due_at", "outcome",
                               "completed_at", "on_time")}
    return [CaseFacts(case_id="F-1", version=7, **base),
            CaseFacts(case_id="F-2", version=1, **{**base, **plain, "officers": (), "on_time": True, "rating_level": 5})]


def test_fast_paths_store_exactly_what_the_column_path_stores(tmp_path: Path) -> None:
    """Events and facts go to chDB as JSON extracted by the engine; the rows must equal the plain path's."""
    from schemas.events import Accepted, Applicant, Rated, StepCompleted, encode_event
    from warehouse.rows import event_columns, facts_columns

    syn = generate(3000, seed=3)
    items = [s.item for s in syn.steps]
    at = datetime(2026, 3, 9, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    tricky = [
        StepCompleted(event_id='X-1 "event_id":"evil"', case_id='C "case_id":"evil" \\ 张\n', occurred_at=at,
                      source="src\t\u0001", officer_id='O "officer_id":"x"', step='审查 "level":9, "source":"x"'),
        Rated(event_id="X-2", case_id="C2", occurred_at=at, source="s", level=4, comment='"recorded_at":"x"'),
        Accepted(event_id="X-3", case_id="C3", occurred_at=at, source="s", recorded_at=at + timedelta(days=400),
                 applicant=Applicant(name='"case_id":"Z"', id_number="x"), due_at=at),
    ]
    items += [(e, encode_event(e), at) for e in tricky]
    assert any(not hasattr(it[0], "case_id") for it in items)  # invalid lines are in there too
    facts = _tricky_facts()
    with open_warehouse(str(tmp_path / "data")) as wh:
        wh.migrate()

        def rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            ev = wh.query("SELECT *, raw_hash FROM events ORDER BY case_id, occurred_at, event_id, raw_hash")
            fa = wh.query("SELECT * FROM case_facts ORDER BY case_id")
            wh.execute("TRUNCATE TABLE events")
            wh.execute("TRUNCATE TABLE case_facts")
            return ev, fa

        wh.insert_columns("events", event_columns(items))
        wh.insert_columns("case_facts", facts_columns(facts))
        plain = rows()
        for part in wh.prepare_events(items):
            wh.write(part)
        wh.write(wh.prepare_facts(facts))
        fast = rows()
    assert len(plain[0]) == len(items) and len(plain[1]) == 2
    assert fast[0] == plain[0]
    assert fast[1] == plain[1]
    assert plain[1][0]["fee_paid"] == Decimal("0.0001") and plain[1][0]["on_time"] == 0
    assert plain[1][0]["fee_waived"] == Decimal("1.2345")  # 4 decimals, truncated on both paths
    assert plain[1][1]["on_time"] == 1 and plain[1][1]["submitted_at"] is None


def test_fast_paths_refuse_naive_times(tmp_path: Path) -> None:
    from schemas.events import Completed

    naive = Completed(event_id="n1", case_id="N", occurred_at=datetime(2026, 3, 1, 8, 0), source="s")
    with open_warehouse(str(tmp_path / "data")) as wh:
        wh.migrate()
        with pytest.raises(WarehouseError, match="without UTC offset"):
            for part in wh.prepare_events([(naive, b"{}", datetime.now(CHINA_TZ))]):
                wh.write(part)
        bad = _tricky_facts()[0]
        import msgspec

        with pytest.raises(WarehouseError, match="without UTC offset"):
            wh.write(wh.prepare_facts([msgspec.structs.replace(bad, decided_at=datetime(2026, 3, 1, 8, 0))]))
        assert counts(wh)["events"] == 0 and counts(wh)["case_facts"] == 0


def test_the_sink_keeps_the_highest_version_of_each_case_in_any_order() -> None:
    from warehouse import Sink

    facts = _tricky_facts()[0]
    import msgspec

    def v(case: str, n: int) -> Any:
        return msgspec.structs.replace(facts, case_id=case, version=n)

    sink = Sink(object(), max_rows=10**6, max_seconds=0, chain=False)
    sink.add_facts([v("a", 1), v("b", 5), v("a", 3)])
    sink.add_facts([v("a", 2), v("b", 7), v("c", 1)])
    sink.add_facts([v("c", 4), v("c", 2), v("b", 6)])
    sink.add_facts([v("a", 2), v("c", 4), v("b", 7)])  # equal versions: the later one is kept
    assert {k: f.version for k, f in sink._facts.items()} == {"a": 3, "b": 7, "c": 4}
    sink._facts.clear()  # nothing to write: the fake warehouse cannot
    sink.close()


def test_time_columns_are_exact_on_both_conversion_paths() -> None:
    import pyarrow as pa

    from warehouse.embedded import _TS, _times

    tz8, tz_minus5 = timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))
    a = datetime(2026, 3, 1, 0, 0, 0, 999999, tzinfo=tz8)
    b = datetime(1999, 12, 31, 23, 59, 59, 1000, tzinfo=tz_minus5)
    c = datetime(2040, 1, 1, tzinfo=UTC)
    runs = [a] * 100 + [None] * 30 + [b] * 50 + [a] * 20  # a few objects repeated: converted once each
    distinct = [a + timedelta(microseconds=i * 7919) if i % 5 else None for i in range(300)] + [b, c]
    for values in (runs, distinct):
        assert _times("t", values).equals(pa.array(values, _TS))
    for values in (runs, distinct):
        with pytest.raises(ValueError, match="naive"):
            _times("t", [*values, datetime(2026, 3, 1, 8, 0)])
