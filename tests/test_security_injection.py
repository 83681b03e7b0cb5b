"""SQL injection through every command-line filter that reaches the warehouse: the values travel as query
parameters, never inside the SQL text, so hostile strings select nothing, change nothing, and at worst
make the command refuse the value with a sentence — never a traceback, never a changed or dropped table.

A chDB warehouse is filled by ``esup demo`` (200 cases: events, facts, findings, alerts and their
deliveries), then each payload goes through ``esup replay --case/--department/--from/--to/--run-id``,
``esup export monthly --region/--month/--run-id``, ``esup case history``, ``esup alerts list/show/ack``
and ``esup audit verify --case``; afterwards every table holds what it held and the hash chains verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from esup.cli import app
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - fixture
from warehouse import open_warehouse
from warehouse.chain import verify

PAYLOADS = [
    "' OR 1=1 --",
    "x'); DROP TABLE events; --",
    "'; ALTER TABLE events DELETE WHERE 1=1; --",
    "\\' OR 1=1 --",
    "\\",
    "’ OR ‘1’=‘1",  # unicode quotes
    "' UNION ALL SELECT raw FROM events --",
    "{case_id:String}",  # the placeholder syntax of warehouse.sql.bind
    "%(case_id)s",  # the placeholder syntax of the server driver
    "2026-10' OR '1'='1",
]
_TABLES = ("events", "case_facts", "event_chain", "alert_deliveries", "alert_lifecycle")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("inject")
    result = CliRunner().invoke(app, ["demo", "--cases", "200", "--data-dir", str(root / "data"),
                                      "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    data = str(root / "data")
    return {"root": root, "data": data, "before": _snapshot(data)}


def _snapshot(data: str) -> dict[str, Any]:
    with open_warehouse(data) as wh:
        out: dict[str, Any] = {t: wh.query(f"SELECT count() AS n FROM {t} FINAL")[0]["n"] for t in _TABLES}
        out["live_findings"] = wh.query("SELECT count() AS n FROM findings FINAL WHERE run_id = 'live'")[0]["n"]
        out["sample"] = wh.query("SELECT case_id, event_id, hex(raw) AS h FROM events FINAL ORDER BY case_id, "
                                 "event_id LIMIT 5")
    return out


def _commands(data: str, out: Path, value: str) -> list[list[str]]:
    return [
        ["replay", "--data-dir", data, "--no-store", "--quiet", "--case", value],
        ["replay", "--data-dir", data, "--no-store", "--quiet", "--department", value],
        ["replay", "--data-dir", data, "--no-store", "--quiet", "--from", value],
        ["replay", "--data-dir", data, "--no-store", "--quiet", "--to", value],
        ["replay", "--data-dir", data, "--quiet", "--run-id", value, "--to", "2026-10-02"],
        ["export", "monthly", "--data-dir", data, "--month", "2026-10", "--region", value, "--format", "csv",
         "--out", str(out / "csv"), "--quiet"],
        ["export", "monthly", "--data-dir", data, "--month", value, "--format", "csv", "--out", str(out / "csv2"),
         "--quiet"],
        ["export", "monthly", "--data-dir", data, "--month", "2026-10", "--run-id", value, "--format", "csv",
         "--out", str(out / "csv3"), "--quiet"],
        ["case", "history", value, "--data-dir", data],
        ["case", "history", value, "--data-dir", data, "--json"],
        ["alerts", "list", "--warehouse", data, "--department", value, "--json"],
        ["alerts", "list", "--warehouse", data, "--severity", value, "--json"],
        ["alerts", "list", "--warehouse", data, "--status", value],
        ["alerts", "show", value, "--warehouse", data],
        ["alerts", "ack", value, "--by", value, "--warehouse", data],
        ["audit", "verify", "--data-dir", data, "--case", value],
    ]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_filter_values_select_nothing_and_change_nothing(store: dict[str, Any], payload: str,
                                                                 tmp_path: Path) -> None:
    runner = CliRunner()
    for args in _commands(store["data"], tmp_path, payload):
        result = runner.invoke(app, args)
        # A clean outcome: it ran (nothing matched), or it refused the value with a message.
        assert result.exit_code in (0, 1, 2), (args, result.output[-500:])
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), (args, repr(result.exception), result.output[-800:])
        text = result.output
        assert "Traceback" not in text, (args, text[-800:])
        for row in store["before"]["sample"]:
            assert row["h"] not in text  # nothing of the stored lines comes out through a filter
    after = _snapshot(store["data"])
    assert after == store["before"], "the warehouse changed"


def test_the_warehouse_is_intact_after_all_of_it(store: dict[str, Any]) -> None:
    assert _snapshot(store["data"]) == store["before"]
    with open_warehouse(store["data"]) as wh:
        report = verify(wh)
        tables = {r["name"] for r in wh.query("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert report.ok, report.problems[:5]
    assert set(_TABLES) | {"findings", "notes"} <= tables


@pytest.mark.parametrize("backend", ["chdb", pytest.param("server", marks=pytest.mark.server)])
def test_hostile_strings_are_values_on_both_backends(backend: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """Every payload, and the characters of ClickHouse's escaped format, comes back as it went in."""
    values = [*PAYLOADS, "tab\there", "new\nline", "cr\rx", "nul\0x", "\\t is not a tab", "'", "''", "\\'"]
    if backend == "chdb":
        target = str(tmp_path / "data")
    else:
        import os

        target = f"{request.getfixturevalue('clickhouse_server')}/esup_inject{os.getpid()}"
    with open_warehouse(target) as wh:
        wh.migrate()
        for v in values:
            assert wh.query("SELECT {v:String} AS v", {"v": v})[0]["v"] == v, repr(v)
            assert list(wh.query("SELECT {v:Array(String)} AS v", {"v": [v]})[0]["v"]) == [v], repr(v)
            assert wh.query("SELECT count() AS n FROM events WHERE case_id = {v:String}", {"v": v})[0]["n"] == 0
