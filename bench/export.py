"""Monthly export benchmark: a simulated month of 100,000 cases, exported to xlsx and CSV.

``bench_export()`` builds the month's rows first (not timed: that is the engine's and the warehouse's
work), stores them in a fresh chDB warehouse (not timed), then times what ``esup export monthly``
pays: loading the month from the warehouse, computing the report, writing the workbook and the CSV
files. The target from the issue is under 30 seconds for 100,000 cases.

The rows are synthetic but shaped like the engine's: the real catalog's items, departments and
windows, two thirds 即办件, a few percent late, rated, complained about, and findings of every
family at plausible rates. What matters is volume and shape, not the exact figures.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.events import CHINA_TZ

MONTH = "2026-10"
_RULES_BY_FAMILY = {
    "fee": ["FEE.NO_BASIS", "FEE.OVER_STANDARD", "FEE.CASH_AT_WINDOW", "FEE.AMOUNT_MISMATCH", "FEE.DUPLICATE"],
    "procedure": ["PROCEDURE.SKIPPED_STEP", "PROCEDURE.OUT_OF_ORDER", "PROCEDURE.SAME_OFFICER",
                  "PROCEDURE.OFF_HOURS", "PROCEDURE.BACKDATED", "PROCEDURE.TOO_FAST"],
    "timeout": ["TIMEOUT.STEP_OVERDUE", "TIMEOUT.INTAKE_OVERDUE", "TIMEOUT.PROMISED_WARNING"],
}
_SEVERITY = {"FEE.AMOUNT_MISMATCH": "yellow", "PROCEDURE.OUT_OF_ORDER": "yellow", "PROCEDURE.OFF_HOURS": "yellow",
             "PROCEDURE.BACKDATED": "yellow", "PROCEDURE.TOO_FAST": "yellow", "TIMEOUT.STEP_OVERDUE": "yellow",
             "TIMEOUT.INTAKE_OVERDUE": "yellow", "TIMEOUT.PROMISED_WARNING": "yellow",
             "PROCEDURE.ON_THE_SPOT_LATE": "yellow", "QUALITY.BAD_RATING": "yellow"}


def synthetic_month(cases: int = 100_000, seed: int = 11, month: str = MONTH) -> dict[str, list[dict[str, Any]]]:
    """Case facts, findings and events (warehouse-shaped dicts) for one month of ``cases`` cases."""
    from reports.monthly import month_bounds
    from rules.catalog import load_catalog
    from rules.findings import finding_id

    rng = random.Random(seed)
    cat = load_catalog()
    items = list(cat.items)
    start, end = month_bounds(month)
    days = (end - start).days
    facts: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def finding(cid: str, it: Any, rule: str, at: datetime, occurrence: str, msg: str) -> None:
        findings.append({
            "run_id": "live", "case_id": cid, "finding_id": finding_id(cid, rule, occurrence), "rule": rule,
            "category": rule.split(".")[0], "severity": _SEVERITY.get(rule, "red"), "item_code": it.code,
            "department": it.department, "window": it.window, "region_code": "330102", "officer_id": "OF-1",
            "fired_at": at, "deadline": None, "event_id": None, "message": msg, "basis": it.basis or "",
            "catalog_version": cat.version, "occurrence": occurrence})

    def event(cid: str, typ: str, at: datetime, n: int, **extra: Any) -> None:
        eid = f"{cid}-{n:02d}"
        body = {"event_type": typ, "event_id": eid, "case_id": cid, "occurred_at": at.isoformat(), "source": "bench",
                **extra}
        events.append({"case_id": cid, "occurred_at": at, "event_id": eid, "event_type": typ, "source": "bench",
                       "received_at": at, "level": extra.get("level", 0), "valid": 1,
                       "raw": json.dumps(body, ensure_ascii=False).encode()})

    for i in range(cases):
        cid = f"3301022026{i:010d}"
        spot = rng.random() < 0.66
        pool = [it for it in items if (it.kind == "on_the_spot") == spot] or items
        it = rng.choice(pool)
        day = rng.randrange(days)
        submitted = start + timedelta(days=day, seconds=int(30600 + rng.random() * 28800))
        accepted = submitted + timedelta(seconds=int(300 + rng.random() * 1800))
        status, completed, on_time = "accepted", None, None
        if spot:
            due = accepted.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            late = rng.random() < 0.02
            completed = accepted + (timedelta(days=1, hours=2) if late else timedelta(seconds=int(1200 + rng.random() * 3600)))
        else:
            due = accepted + timedelta(seconds=int(max(1, it.promised_days) * 1.4 * 86400))
            late = rng.random() < 0.04
            took = (due - accepted) * (1.2 if late else 0.3 + rng.random() * 0.6)
            completed = accepted + timedelta(seconds=int(took.total_seconds()))
        statutory = accepted + timedelta(seconds=int(it.statutory_days * 1.4 * 86400))
        if completed >= end and rng.random() < 0.5:
            completed = None  # still open at the end of the month
        n = 2
        if rng.random() < 0.02:
            status, completed, on_time = "rejected", None, None
            event(cid, "intake_rejected", accepted, n)
            n += 1
        elif completed is not None:
            status, on_time = "completed", completed <= due
        if rng.random() < 0.05:
            event(cid, "supplement_requested", accepted + timedelta(hours=1), n)
            n += 1
        if late and status != "rejected" and due < end:
            rule = "PROCEDURE.ON_THE_SPOT_LATE" if spot else "TIMEOUT.PROMISED_OVERDUE"
            finding(cid, it, rule, due, rule, f"{it.name}超过期限{due:%Y-%m-%d %H:%M}未办结。")
            if not spot and rng.random() < 0.2 and statutory < end:
                finding(cid, it, "TIMEOUT.STATUTORY_OVERDUE", statutory, "TIMEOUT.STATUTORY_OVERDUE",
                        f"{it.name}超过法定期限{statutory:%Y-%m-%d %H:%M}未作出决定。")
        if rng.random() < 0.05:
            fam = rng.choice(list(_RULES_BY_FAMILY))
            rule = rng.choice(_RULES_BY_FAMILY[fam])
            finding(cid, it, rule, accepted + timedelta(hours=2), f"{rule}-x", f"{it.name}：{rule} 模拟发现。")
        if completed is not None and rng.random() < 0.6:
            level = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 8, 30, 60])[0]
            rated = completed + timedelta(hours=1)
            event(cid, "rated", rated, n, level=level)
            rated_id = f"{cid}-{n:02d}"
            n += 1
            if level <= 2:
                finding(cid, it, "QUALITY.BAD_RATING", rated, rated_id, f"{it.name}收到差评。")
                if rng.random() < 0.7:
                    event(cid, "rating_resolved", rated + timedelta(days=3), n)
                    n += 1
                elif rated + timedelta(days=21) < end:
                    finding(cid, it, "QUALITY.BAD_RATING_UNRESOLVED", rated + timedelta(days=21), rated_id,
                            f"{it.name}差评逾期未整改。")
        if rng.random() < 0.003:
            filed = accepted + timedelta(days=1)
            event(cid, "complaint_filed", filed, n, complaint_id=f"TS-{i}")
            n += 1
            if rng.random() < 0.8:
                event(cid, "complaint_resolved", filed + timedelta(days=2), n, complaint_id=f"TS-{i}")
                n += 1
            elif filed + timedelta(days=7) < end:
                finding(cid, it, "QUALITY.COMPLAINT_OVERDUE", filed + timedelta(days=7), f"TS-{i}",
                        f"{it.name}投诉超期未办结。")
        facts.append({
            "case_id": cid, "version": n, "status": status, "item_code": it.code, "item_name": it.name,
            "item_kind": it.kind, "department": it.department, "window": it.window, "region_code": "330102",
            "catalog_version": cat.version, "officers": ("OF-1",), "submitted_at": submitted, "accepted_at": accepted,
            "clock_start_at": accepted, "promised_due_at": due, "statutory_due_at": statutory,
            "decided_at": completed, "outcome": "approved" if completed else None, "completed_at": completed,
            "fee_assessed": Decimal(0), "fee_paid": Decimal(0), "on_time": on_time,
            "last_event_at": completed or accepted})
    return {"case_facts": facts, "findings": findings, "events": events}


def bench_export(cases: int = 100_000, seed: int = 11, out_dir: str | None = None,
                 use_warehouse: bool = True) -> dict[str, Any]:
    """Export a simulated month of ``cases`` cases; return seconds (load + build + xlsx + CSV) and parts.

    With ``use_warehouse`` the rows are stored in a fresh chDB directory and read back through
    ``reports.source`` (the path ``esup export monthly --data-dir`` takes); otherwise the report is
    built from the rows in memory and ``load_seconds`` is 0.
    """
    from reports.monthly import build, write_csv, write_xlsx
    from reports.source import load_from_warehouse

    rows = synthetic_month(cases, seed)
    own = out_dir is None
    out = Path(out_dir or tempfile.mkdtemp(prefix="esup-bench-export-"))
    result: dict[str, Any] = {"cases": cases, "month": MONTH}
    wh = None
    try:
        if use_warehouse:
            from warehouse import open_warehouse

            wh = open_warehouse(str(out / "warehouse"))
            wh.migrate()
            for table in ("case_facts", "findings", "events"):
                data = rows[table]
                for i in range(0, len(data), 50_000):
                    wh.insert(table, data[i:i + 50_000])
        t0, c0 = time.perf_counter(), time.process_time()
        if wh is not None:
            inp = load_from_warehouse(wh, MONTH, source="bench")
            facts, findings, events = inp.facts, inp.findings, inp.events
        else:
            facts, findings, events = rows["case_facts"], rows["findings"], rows["events"]
        t1 = time.perf_counter()
        report = build(facts, findings, events, month=MONTH, generated_by="bench",
                       generated_at=datetime(2026, 11, 2, 9, 0, tzinfo=CHINA_TZ), source="bench")
        t2 = time.perf_counter()
        write_xlsx(report, out / "monthly.xlsx")
        t3 = time.perf_counter()
        write_csv(report, out / "csv")
        t4, c4 = time.perf_counter(), time.process_time()
        result.update({
            "seconds": round(t4 - t0, 3),
            "cpu_seconds": round(c4 - c0, 3),  # all threads (chDB's too): wall time on a shared machine lies
            "load_seconds": round(t1 - t0, 3), "build_seconds": round(t2 - t1, 3),
            "xlsx_seconds": round(t3 - t2, 3), "csv_seconds": round(t4 - t3, 3),
            "warehouse": wh is not None, "facts_rows": report.input_rows["case_facts"],
            "findings_rows": report.input_rows["findings"], "events_rows": report.input_rows["events"],
            "windows": len(report.windows), "detail_rows": sum(len(v) for v in report.details.values()),
            "xlsx_bytes": (out / "monthly.xlsx").stat().st_size, "target_seconds": 30,
        })
        result["ok"] = result["seconds"] < 30
        return result
    finally:
        if wh is not None:
            wh.close()
        if own:
            shutil.rmtree(out, ignore_errors=True)
