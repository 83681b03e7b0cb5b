"""Run every ClickHouse query of the dashboards against a warehouse, as Grafana would send it.

Used by the tests (on the simulator's demo data in chDB) and by ``esup dashboards check`` (on a real
warehouse after a migration): a renamed column or a dropped table shows up here as a named panel
with the server's error, not as an empty panel on the inspectors' wall screen.

Variables are resolved like Grafana does on load: each ClickHouse query variable's own query runs
first (with the variables before it), its values become the options "All" expands to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dashboards.build import CLICKHOUSE_UID
from dashboards.macros import ALL, expand


@dataclass
class QueryRun:
    """One query as run: where it comes from, the SQL sent, and what came back."""

    dashboard: str  # uid
    panel: str  # panel title, or "$name" for a variable's query
    ref: str
    sql: str
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    series: bool = False  # a time series query (first column must be ``time``)

    @property
    def ok(self) -> bool:
        return self.error is None


def panels(board: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows keep their panels inside


def clickhouse_targets(board: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(panel, target) for every ClickHouse query of a dashboard."""
    for p in panels(board):
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") == CLICKHOUSE_UID:
                yield p, t


def _query(wh: Any, sql: str) -> tuple[list[str], list[dict[str, Any]]]:
    rows = wh.query(sql)
    columns = list(rows[0].keys()) if rows else _columns(wh, sql)
    return columns, rows


def _columns(wh: Any, sql: str) -> list[str]:
    """Column names of a query that returned no rows (DESCRIBE works without data)."""
    return [r["name"] for r in wh.query(f"DESCRIBE ({sql})")]


def resolve_variables(wh: Any, board: Mapping[str, Any], start: datetime, end: datetime,
                      selected: Mapping[str, Sequence[str] | str] | None = None,
                      ) -> tuple[dict[str, Sequence[str] | str], dict[str, list[str]], list[QueryRun]]:
    """Selections (default: "All", or a text box's default) and options for every variable."""
    chosen: dict[str, Sequence[str] | str] = {}
    options: dict[str, list[str]] = {}
    runs: list[QueryRun] = []
    overrides = dict(selected or {})
    for var in board.get("templating", {}).get("list", []):
        name = var["name"]
        kind = var.get("type")
        if kind == "textbox":
            chosen[name] = overrides.get(name, var.get("query", ""))
            continue
        if kind == "custom":
            options[name] = [o["value"] for o in var.get("options", [])]
        elif kind == "query" and var.get("datasource", {}).get("uid") == CLICKHOUSE_UID:
            run = QueryRun(board["uid"], f"${name}", "var", "")
            try:
                run.sql = expand(var["query"], start, end, selected=chosen, options=options)
                run.columns, run.rows = _query(wh, run.sql)
                options[name] = [str(next(iter(r.values()))) for r in run.rows]
            except Exception as exc:  # noqa: BLE001 - reported per query
                run.error = str(exc)
                options[name] = []
            runs.append(run)
        chosen[name] = overrides.get(name, ALL if var.get("includeAll") else (options.get(name) or [""])[0])
    return chosen, options, runs


def run_dashboard(wh: Any, board: Mapping[str, Any], start: datetime, end: datetime, *, interval_s: int = 3600,
                  selected: Mapping[str, Sequence[str] | str] | None = None) -> list[QueryRun]:
    """Every ClickHouse query of ``board`` (variables first) for the time range ``[start, end]``."""
    chosen, options, runs = resolve_variables(wh, board, start, end, selected)
    for panel, target in clickhouse_targets(board):
        run = QueryRun(board["uid"], panel.get("title", ""), target.get("refId", ""), "",
                       series=target.get("format") == 0)
        try:
            run.sql = expand(target["rawSql"], start, end, interval_s=interval_s, selected=chosen, options=options)
            run.columns, run.rows = _query(wh, run.sql)
        except Exception as exc:  # noqa: BLE001 - reported per query
            run.error = str(exc)
        runs.append(run)
    return runs
