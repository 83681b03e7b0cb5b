"""The questions other parts ask the warehouse, named for what they answer.

Every function takes an open warehouse (chDB or server) and returns plain dicts with aware
datetimes (China time). Values always travel as query parameters; the only SQL assembled here is
from constant fragments chosen by which optional filters were given.

Reads never count a row twice although the tables may briefly hold duplicates (a retried batch
waits for a background merge): ReplacingMergeTree tables are read with FINAL, or through uniqExact
of their ids, which gives the same answer with or without duplicates.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

from schemas.events import CHINA_TZ
from warehouse.tables import AGGREGATES, TABLES

_FINDING_COLUMNS = ("run_id, finding_id, rule, category, severity, case_id, item_code, department, window, "
                    "region_code, officer_id, fired_at, deadline, event_id, message, basis, catalog_version, "
                    "occurrence")


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.tzinfo is None:
        raise ValueError(f"{name} is a naive datetime; pass an aware one (e.g. tzinfo=CHINA_TZ)")
    return value


def counts(wh: Any) -> dict[str, int]:
    """Rows per table: logical rows (after de-duplication) for base tables, stored rows for aggregates.

    ``events_invalid`` is the part of ``events`` that failed validation, so that every input line is
    accounted for: stored valid, or stored invalid with its reason.
    """
    out: dict[str, int] = {}
    for table in TABLES:
        out[table] = int(wh.query(f"SELECT count() AS n FROM {table} FINAL")[0]["n"])
    out["events_invalid"] = int(wh.query("SELECT count() AS n FROM events FINAL WHERE valid = 0")[0]["n"])
    for table in AGGREGATES:
        out[table] = int(wh.query(f"SELECT count() AS n FROM {table}")[0]["n"])
    return out


def cases_overdue_now(wh: Any, now: datetime) -> list[dict[str, Any]]:
    """Open cases past a deadline at ``now``: the promised one, the statutory one (unless decided), or
    an on-the-spot item (即办件) not finished on the day its clock started.

    ``overdue_kind`` says which (statutory first, as the graver); no personal data is returned.
    """
    now = _aware(now, "now")
    sql = """
    SELECT case_id, status, item_code, item_name, item_kind, department, window, region_code,
           accepted_at, clock_start_at, promised_due_at, statutory_due_at, last_event_at,
           multiIf(ifNull(statutory_due_at < {now:DateTime}, 0) AND status != 'decided', 'statutory',
                   ifNull(promised_due_at < {now:DateTime}, 0), 'promised', 'on_the_spot') AS overdue_kind
    FROM (SELECT * FROM case_facts FINAL)
    WHERE status IN ('submitted', 'accepted', 'paused', 'decided')
      AND (ifNull(promised_due_at < {now:DateTime}, 0)
           OR (ifNull(statutory_due_at < {now:DateTime}, 0) AND status != 'decided')
           OR (ifNull(item_kind = 'on_the_spot', 0)
               AND ifNull(toDate(clock_start_at) < toDate({now:DateTime}), 0)))
    ORDER BY coalesce(promised_due_at, statutory_due_at, clock_start_at), case_id
    """
    return wh.query(sql, {"now": now})


def findings_for_period(wh: Any, start: datetime, end: datetime, run_id: str = "live",
                        department: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
    """Findings of one run fired in ``[start, end)``, optionally for one department and/or region.

    Keys are the Finding fields plus ``run_id`` and ``category`` (FEE, PROCEDURE, TIMEOUT, QUALITY).
    """
    params: dict[str, Any] = {"run_id": run_id, "start": _aware(start, "start"), "end": _aware(end, "end")}
    where = ["run_id = {run_id:String}", "fired_at >= {start:DateTime}", "fired_at < {end:DateTime}"]
    if department is not None:
        where.append("department = {department:String}")
        params["department"] = department
    if region is not None:
        where.append("region_code = {region:String}")
        params["region"] = region
    sql = (f"SELECT {_FINDING_COLUMNS} FROM findings FINAL WHERE {' AND '.join(where)} "
           "ORDER BY fired_at, finding_id")
    return wh.query(sql, params)


def month_bounds(month: str | date) -> tuple[datetime, datetime]:
    """``'2026-03'`` or a date -> [first instant, first instant of the next month) in China time."""
    if isinstance(month, str):
        year, mon = (int(p) for p in month.split("-")[:2])
    else:
        year, mon = month.year, month.month
    start = datetime(year, mon, 1, tzinfo=CHINA_TZ)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=CHINA_TZ)
    return start, end


def _in(col: str, end: str = "end") -> str:
    return f"ifNull({col} >= {{start:DateTime}} AND {col} < {{{end}:DateTime}}, 0)"


FIGURES = ("received", "accepted", "completed", "completed_on_time", "on_the_spot_completed",
           "on_the_spot_same_day", "overdue", "intake_rejections", "supplements", "fee_findings",
           "procedure_findings", "timeout_findings", "quality_findings", "ratings", "ratings_good", "complaints")


def window_monthly_figures(wh: Any, month: str | date, region: str | None = None,
                           now: datetime | None = None) -> list[dict[str, Any]]:
    """Per department and window, the month's figures behind the accountability report (月度考核).

    Month boundaries are China time. Definitions (case counts unless said otherwise):
    received (submitted, or accepted when no submission was recorded, in the month), accepted,
    completed, completed_on_time (completed in the month by the promised deadline; for 即办件 the same
    day), on_the_spot_completed and on_the_spot_same_day (即办件 completed in the month / on time),
    overdue (promised deadline fell in the month, before ``now``, and the case was not completed by
    it), intake_rejections, supplements (supplement requests), ratings, ratings_good (levels 4–5) and
    complaints (events in the month), fee/procedure/timeout/quality_findings (live findings fired in
    the month), ratings_good_share (ratings_good / ratings, None without ratings).
    Department and window are '' where unknown.
    """
    start, end = month_bounds(month)
    cutoff = min(end, _aware(now, "now")) if now is not None else min(end, datetime.now(CHINA_TZ))
    params: dict[str, Any] = {"start": start, "end": end, "cutoff": cutoff}
    region_filter = ""
    if region is not None:
        region_filter = "WHERE region_code = {region:String}"
        params["region"] = region
    facts_sql = f"""
    SELECT department, window,
        countIf({_in('coalesce(submitted_at, accepted_at)')}) AS received,
        countIf({_in('accepted_at')}) AS accepted,
        countIf({_in('completed_at')}) AS completed,
        countIf({_in('completed_at')} AND ifNull(on_time = 1, 0)) AS completed_on_time,
        countIf({_in('completed_at')} AND item_kind = 'on_the_spot') AS on_the_spot_completed,
        countIf({_in('completed_at')} AND item_kind = 'on_the_spot' AND ifNull(on_time = 1, 0)) AS on_the_spot_same_day,
        countIf({_in('promised_due_at', 'cutoff')} AND status NOT IN ('rejected', 'withdrawn')
                AND ifNull(completed_at <= promised_due_at, 0) = 0) AS overdue
    FROM (SELECT ifNull(department, '') AS department, ifNull(window, '') AS window, ifNull(region_code, '') AS region_code,
                 ifNull(item_kind, '') AS item_kind, status, submitted_at, accepted_at, completed_at, on_time,
                 promised_due_at
          FROM case_facts FINAL)
    {region_filter}
    GROUP BY department, window
    """
    events_sql = f"""
    SELECT department, window,
        uniqExactIf(event_id, event_type = 'intake_rejected') AS intake_rejections,
        uniqExactIf(event_id, event_type = 'supplement_requested') AS supplements,
        uniqExactIf(event_id, event_type = 'rated') AS ratings,
        uniqExactIf(event_id, event_type = 'rated' AND level >= 4) AS ratings_good,
        uniqExactIf(event_id, event_type = 'complaint_filed') AS complaints
    FROM (SELECT case_id, event_id, event_type, level FROM events
          WHERE valid = 1 AND occurred_at >= {{start:DateTime}} AND occurred_at < {{end:DateTime}}
            AND event_type IN ('intake_rejected', 'supplement_requested', 'rated', 'complaint_filed')) AS e
    ALL INNER JOIN
         (SELECT case_id, ifNull(department, '') AS department, ifNull(window, '') AS window,
                 ifNull(region_code, '') AS region_code
          FROM case_facts FINAL) AS f USING case_id
    {region_filter}
    GROUP BY department, window
    """
    findings_sql = f"""
    SELECT department, window,
        uniqExactIf(finding_id, category = 'FEE') AS fee_findings,
        uniqExactIf(finding_id, category = 'PROCEDURE') AS procedure_findings,
        uniqExactIf(finding_id, category = 'TIMEOUT') AS timeout_findings,
        uniqExactIf(finding_id, category = 'QUALITY') AS quality_findings
    FROM (SELECT finding_id, category, ifNull(department, '') AS department, ifNull(window, '') AS window,
                 ifNull(region_code, '') AS region_code
          FROM findings
          WHERE run_id = 'live' AND fired_at >= {{start:DateTime}} AND fired_at < {{end:DateTime}})
    {region_filter}
    GROUP BY department, window
    """
    table: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    for sql, keys in ((facts_sql, ("start", "end", "cutoff")), (events_sql, ("start", "end")),
                      (findings_sql, ("start", "end"))):
        p = {k: params[k] for k in keys}
        if region is not None:
            p["region"] = region
        for row in wh.query(sql, p):
            key = (row.pop("department"), row.pop("window"))
            table[key].update({k: int(v) for k, v in row.items()})
    out = []
    for (department, window), figures in sorted(table.items()):
        if not any(figures.values()):
            continue
        share = figures["ratings_good"] / figures["ratings"] if figures["ratings"] else None
        out.append({"department": department, "window": window, **figures, "ratings_good_share": share})
    return out


def case_history(wh: Any, case_id: str, run_id: str = "live") -> dict[str, Any]:
    """Everything known about one case: its current facts, its lines in event-time order (valid or
    not, each with the notes and findings it caused), all its findings of ``run_id`` with their alert
    deliveries and lifecycle rows.

    Contains personal data as stored (the facts' applicant fields, and the raw lines as received):
    mask before display.
    """
    p = {"case_id": case_id, "run_id": run_id}
    facts = wh.query("SELECT * FROM case_facts FINAL WHERE case_id = {case_id:String}", p)
    events = wh.query(
        "SELECT event_id, event_type, occurred_at, recorded_at, received_at, source, officer_id, level, valid, "
        "error, position, hex(raw) AS raw_hex FROM events FINAL WHERE case_id = {case_id:String} "
        "ORDER BY occurred_at, event_id, received_at", p)
    notes = wh.query("SELECT event_id, kind, message FROM notes FINAL "
                     "WHERE run_id = {run_id:String} AND case_id = {case_id:String} ORDER BY event_id, kind", p)
    findings = wh.query(f"SELECT {_FINDING_COLUMNS} FROM findings FINAL "
                        "WHERE run_id = {run_id:String} AND case_id = {case_id:String} "
                        "ORDER BY fired_at, finding_id", p)
    ids = sorted({f["finding_id"] for f in findings})
    deliveries: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    if ids:
        q = {"ids": ids}
        deliveries = wh.query(
            "SELECT delivery_id, attempt, result, alert_id, finding_ids, recipient, channel, kind, attempted_at, "
            "error, digest, detail FROM alert_deliveries FINAL "
            "WHERE has({ids:Array(String)}, alert_id) OR hasAny(finding_ids, {ids:Array(String)}) "
            "ORDER BY attempted_at, delivery_id, attempt", q)
        alerts = wh.query(
            "SELECT alert_id, version, status, severity, changed_at, actor, reason, finding_ids, detail "
            "FROM alert_lifecycle FINAL "
            "WHERE has({ids:Array(String)}, alert_id) OR hasAny(finding_ids, {ids:Array(String)}) "
            "ORDER BY changed_at, alert_id, version", q)
    notes_by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in notes:
        notes_by_event[n["event_id"]].append(n)
    findings_by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        related = set([f["finding_id"]])
        f["deliveries"] = [d for d in deliveries if d["alert_id"] in related or related & set(d["finding_ids"])]
        f["alerts"] = [a for a in alerts if a["alert_id"] in related or related & set(a["finding_ids"])]
        if f["event_id"]:
            findings_by_event[f["event_id"]].append(f)
    for e in events:
        e["raw"] = bytes.fromhex(e.pop("raw_hex"))
        e["valid"] = bool(e["valid"])
        e["notes"] = notes_by_event.get(e["event_id"], [])
        e["findings"] = findings_by_event.get(e["event_id"], [])
    return {"case_id": case_id, "run_id": run_id, "facts": facts[0] if facts else None, "events": events,
            "findings": findings, "notes": notes, "deliveries": deliveries, "alerts": alerts}
