"""Where the monthly report's rows come from: the warehouse, JSON Lines files, or an events file run
through the rules engine on the spot.

Each loader returns a :class:`MonthlyInput` of plain rows that ``reports.monthly.build`` accepts; the
report itself never touches storage. Warehouse reads are parameterized (``{name:Type}``, values never
formatted into SQL), read ReplacingMergeTree tables with FINAL so a briefly duplicated row counts
once, and select no personal data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from reports.monthly import (
    ACTIVITY_TYPES,
    EVENT_TYPES,
    FACT_FIELDS,
    FINDING_FIELDS,
    FOLLOW_UP_RULES,
    RESOLUTION_TYPES,
    ReportInputError,
    month_bounds,
)
from schemas.events import CHINA_TZ


@dataclass
class MonthlyInput:
    """The rows one month's report is computed from, and a sentence saying where they came from."""

    facts: list[Any]
    findings: list[Any]
    events: list[Any]
    source: str


def describe_target(target: str | None) -> str:
    """A warehouse target for the cover sheet, without any password."""
    if not target:
        return "chDB ./data"
    if target.startswith(("clickhouse://", "clickhouses://")):
        return "ClickHouse " + re.sub(r"//[^/@]*@", "//", target)
    return f"chDB {target.removeprefix('chdb://')}"


# -------------------------------------------------------------------------------------- warehouse

_ACTIVITY = tuple(sorted(ACTIVITY_TYPES))
_RESOLUTION = tuple(sorted(RESOLUTION_TYPES))
_FOLLOWED = ("complaint_filed", "rated")
_TIMES = frozenset({"submitted_at", "accepted_at", "promised_due_at", "statutory_due_at", "completed_at", "fired_at",
                    "deadline", "occurred_at"})
_EPOCH = datetime(1970, 1, 1, 8, 0, tzinfo=CHINA_TZ)


def _select(columns: tuple[str, ...], ms: str | None) -> str:
    """Columns to select; times as integer epoch milliseconds when the backend can say so cheaply.

    Converting a hundred thousand rows of time zone-aware times to Python objects is most of a
    month's load time; integers come back five times faster and are turned into China time here.
    """
    if ms is None:
        return ", ".join(columns)
    return ", ".join(ms.format(c=c) + f" AS ms__{c}" if c in _TIMES else c for c in columns)


def _ms_expr(wh: Any) -> str | None:
    dialect = getattr(wh, "dialect", None)
    if dialect is None:
        return None
    return "toUnixTimestamp64Milli({c})" if dialect.datetime64 else "toUnixTimestamp({c}) * 1000"


def _times(rows: list[dict[str, Any]], ms: str | None) -> list[dict[str, Any]]:
    if ms is None or not rows:
        return rows
    names = [(c, c[4:]) for c in rows[0] if c.startswith("ms__")]  # an alias may not shadow a column in WHERE
    for r in rows:
        for alias, c in names:
            v = r.pop(alias)
            r[c] = None if v is None else _EPOCH + timedelta(milliseconds=int(v))
    return rows


def _month_cases(table: str) -> str:
    if table == "findings":
        return ("SELECT case_id FROM findings WHERE run_id = {run_id:String} "
                "AND fired_at >= {start:DateTime} AND fired_at < {end:DateTime}")
    return ("SELECT case_id FROM events WHERE valid = 1 AND has({types:Array(String)}, event_type) "
            "AND occurred_at >= {start:DateTime} AND occurred_at < {end:DateTime}")


def _facts_sql(region: bool, ms: str | None = None) -> str:
    def inside(col: str) -> str:
        return f"ifNull({col} >= {{start:DateTime}} AND {col} < {{end:DateTime}}, 0)"

    return (
        f"SELECT {_select(FACT_FIELDS, ms)} FROM case_facts FINAL WHERE ("
        f"{inside('coalesce(submitted_at, accepted_at)')} OR {inside('accepted_at')} OR {inside('completed_at')} "
        f"OR case_id IN ({_month_cases('findings')}) OR case_id IN ({_month_cases('events')}))"
        + (" AND region_code = {region:String}" if region else "")
    )


def _findings_sql(ms: str | None) -> str:
    return (f"SELECT {_select(FINDING_FIELDS, ms)} FROM findings FINAL WHERE run_id = {{run_id:String}} "
            "AND fired_at >= {start:DateTime} AND fired_at < {end:DateTime}")


def _follow_up_sql(ms: str | None) -> str:
    return (f"SELECT {_select(FINDING_FIELDS, ms)} FROM findings FINAL WHERE run_id = {{run_id:String}} "
            "AND has({rules:Array(String)}, rule) AND fired_at >= {end:DateTime} "
            "AND case_id IN (SELECT case_id FROM events WHERE valid = 1 AND has({followed:Array(String)}, event_type) "
            "AND occurred_at >= {start:DateTime} AND occurred_at < {end:DateTime})")


def _events_sql(ms: str | None) -> str:
    return (
        f"SELECT {_select(('event_id', 'case_id', 'event_type', 'occurred_at', 'level'), ms)}, "
        "if(event_type IN ('complaint_filed', 'complaint_resolved'), hex(raw), '') AS raw_hex "
        "FROM events FINAL WHERE valid = 1 AND ("
        "(has({types:Array(String)}, event_type) AND occurred_at >= {start:DateTime} AND occurred_at < {end:DateTime}) "
        "OR (has({resolutions:Array(String)}, event_type) AND occurred_at >= {start:DateTime} "
        "AND case_id IN (SELECT case_id FROM events WHERE valid = 1 AND has({followed:Array(String)}, event_type) "
        "AND occurred_at >= {start:DateTime} AND occurred_at < {end:DateTime})))"
    )


_loose = msgspec.json.Decoder()


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "文件不存在"
    if isinstance(exc, PermissionError):
        return "没有读取权限"
    return exc.strerror or str(exc)


def _complaint_id(raw_hex: str) -> str | None:
    if not raw_hex:
        return None
    try:
        doc = _loose.decode(bytes.fromhex(raw_hex))
    except (ValueError, msgspec.DecodeError):
        return None
    cid = doc.get("complaint_id") if isinstance(doc, dict) else None
    return cid if isinstance(cid, str) and cid else None


def load_from_warehouse(wh: Any, month: str, region: str | None = None, run_id: str = "live",
                        source: str = "") -> MonthlyInput:
    """The month's rows from an open warehouse (``warehouse.open_warehouse``).

    Case facts of every case received, accepted or completed in the month or named by one of the
    month's findings or events (current version, FINAL); the run's findings fired in the month and
    any later bad-rating / complaint overdue findings for the month's ratings and complaints; the
    month's intake rejections, supplement requests, ratings and complaints, with later resolutions.
    """
    start, end = month_bounds(month)
    p: dict[str, Any] = {"start": start, "end": end, "run_id": run_id, "types": list(_ACTIVITY)}
    if region:
        p["region"] = region
    ms = _ms_expr(wh)
    facts = _times(wh.query(_facts_sql(bool(region), ms), p), ms)
    findings = _times(wh.query(_findings_sql(ms), {"run_id": run_id, "start": start, "end": end}), ms)
    findings += _times(wh.query(_follow_up_sql(ms), {"run_id": run_id, "start": start, "end": end,
                                                     "rules": sorted(FOLLOW_UP_RULES),
                                                     "followed": list(_FOLLOWED)}), ms)
    events = _times(wh.query(_events_sql(ms), {"start": start, "end": end, "types": list(_ACTIVITY),
                                               "resolutions": list(_RESOLUTION), "followed": list(_FOLLOWED)}), ms)
    for e in events:
        e["complaint_id"] = _complaint_id(e.pop("raw_hex", ""))
    return MonthlyInput(facts, findings, events, source or f"数据仓库（{getattr(wh, 'kind', '?')}）")


def open_and_load(target: str | None, month: str, region: str | None = None, run_id: str = "live") -> MonthlyInput:
    """Open the warehouse named by ``target`` (a directory, ``chdb://…`` or ``clickhouse://…``), load, close."""
    from warehouse import WarehouseError, open_warehouse

    wh = open_warehouse(target)
    try:
        return load_from_warehouse(wh, month, region, run_id, source=f"数据仓库 {describe_target(target)}")
    except WarehouseError as exc:
        text = str(exc)
        if "UNKNOWN_TABLE" in text or "doesn't exist" in text or "Unknown table" in text:
            raise ReportInputError(f"数据仓库 {describe_target(target)} 中没有监察数据表：尚未写入数据，"
                                   "或目录/地址不对") from None
        raise
    finally:
        wh.close()


# ------------------------------------------------------------------------------------------ files


def _jsonl(path: Path, what: str) -> Iterator[dict[str, Any]]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ReportInputError(f"无法读取{what}文件 {path}：{_why(exc)}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = _loose.decode(line)
            except msgspec.DecodeError as exc:
                raise ReportInputError(f"{what}文件 {path} 第 {n} 行不是有效的 JSON：{exc}") from None
            if not isinstance(doc, dict):
                raise ReportInputError(f"{what}文件 {path} 第 {n} 行应为 JSON 对象")
            yield doc


def _events(path: Path, naive_tz: Any = None) -> tuple[list[Any], int]:
    """Valid case events of the kinds the report reads, and how many lines were invalid."""
    from schemas.events import InvalidEvent, read_events

    keep, bad = [], 0
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ReportInputError(f"无法读取事件文件 {path}：{_why(exc)}") from None
    with fh:
        for item in read_events(fh, naive_tz=naive_tz):
            if isinstance(item, InvalidEvent):
                bad += 1
            elif item.event_type in EVENT_TYPES:
                keep.append(item)
    return keep, bad


def load_from_files(facts: str | Path, findings: str | Path, events: str | Path | None = None) -> MonthlyInput:
    """Rows from JSON Lines: case facts (``CaseFacts`` fields, any versions), findings (as
    ``esup run --findings-out`` writes them) and, optionally, the case events file (``esup run`` input)."""
    f_rows = list(_jsonl(Path(facts), "办件事实"))
    x_rows = list(_jsonl(Path(findings), "监察发现"))
    e_rows: list[Any] = []
    note = ""
    if events is not None:
        e_rows, bad = _events(Path(events))
        note = f"；事件 {events}" + (f"（{bad} 行无效已忽略）" if bad else "")
    return MonthlyInput(f_rows, x_rows, e_rows, f"JSON Lines 文件：办件事实 {facts}；监察发现 {findings}{note}")


def load_from_events(events: str | Path, month: str, until: datetime | None = None, catalog: str | None = None,
                     rules_config: str | None = None, now: datetime | None = None) -> MonthlyInput:
    """Run the rules engine over a case-events file (as ``esup run`` does) and take its facts and
    findings. The clock runs to ``until``; by default to the last event or the end of the month,
    whichever is later (but not past ``now`` for a month not yet over), so deadlines in the month
    fire even for cases with no later event."""
    from esup.commands.run import naive_tz_from
    from rules.engine import Engine
    from streams.embedded import load, run_events

    engine = Engine.default(catalog, rules_config)
    path = Path(events)
    try:
        with path.open("rb") as fh:
            valid, invalid, _lines = load(fh, naive_tz_from(engine.config.naive_timezone))
    except OSError as exc:
        raise ReportInputError(f"无法读取事件文件 {path}：{_why(exc)}") from None
    if until is None:
        _start, month_end = month_bounds(month)
        cutoff = min(month_end, now) if now is not None else month_end
        last = max((e.occurred_at for e in valid), default=cutoff)
        until = max(last, cutoff)
    result = run_events(engine, valid, until=until)
    facts = [engine.facts(st) for st in result.states.values()]
    keep = [e for e in valid if e.event_type in EVENT_TYPES]
    note = f"（{len(invalid)} 行无效已忽略）" if invalid else ""
    return MonthlyInput(facts, list(result.findings), keep,
                        f"事件文件 {path}{note}，经规则引擎计算（时钟推进至 {until.isoformat()}）")


def monthly_report(wh: Any, month: str, *, region: str | None = None, run_id: str = "live",
                   config: Any = None, generated_by: str = "", generated_at: datetime | None = None,
                   source: str = "") -> Any:
    """One call for callers that already hold a warehouse (``esup demo``): load the month and build it.

    ``generated_at`` defaults to now here (this is the I/O side; the core itself reads no clock).
    """
    from datetime import UTC

    from reports.monthly import build

    inp = load_from_warehouse(wh, month, region, run_id, source=source)
    return build(inp.facts, inp.findings, inp.events, month=month, region=region, config=config,
                 generated_at=generated_at or datetime.now(UTC).astimezone(CHINA_TZ), generated_by=generated_by,
                 source=inp.source, run_id=run_id)
