"""``esup case history ID``: one case's whole story for an auditor (办件全过程).

Every stored line of the case in event-time order (with its recorded time, validity and the engine's
notes), the clock as the engine sees it (acceptance, paused periods, promised and statutory deadlines,
deadlines still pending), every finding of every run (live and each replay, labelled) and the alert
deliveries behind them. The clock is recomputed by the same engine from the stored lines, under the
catalog version the live run recorded for the case, so it is what the rules saw, not a second opinion.

Personal data is masked in everything printed (张**, 110101********1234, 138****5678).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from esup.commands.run import naive_tz_from, parse_instant, warehouse_target

console = Console(stderr=True)

EVENT_NAMES: dict[str, str] = {
    "submitted": "收件", "accepted": "受理", "intake_rejected": "不予受理", "supplement_requested": "补正告知",
    "supplement_received": "补正材料收到", "step_completed": "环节完成", "suspended": "特别程序开始",
    "resumed": "特别程序结束", "extension_granted": "延期", "fee_assessed": "收费通知", "fee_paid": "缴费",
    "fee_waived": "减免", "fee_refunded": "退费", "decided": "决定", "completed": "办结", "delivered": "送达",
    "withdrawn": "撤回", "rated": "评价", "rating_resolved": "差评整改", "complaint_filed": "投诉",
    "complaint_resolved": "投诉办结",
}
STATUS_NAMES: dict[str, str] = {
    "submitted": "已收件", "accepted": "办理中", "paused": "暂停计时", "decided": "已决定", "completed": "已办结",
    "rejected": "不予受理", "withdrawn": "已撤回", "unknown": "无受理记录",
}
PAUSE_NAMES = {"supplement": "补正", "suspension": "特别程序"}
_DETAIL_FIELDS = (("step", "环节"), ("procedure", "程序"), ("planned_days", "计划天数"), ("days", "延期天数"),
                  ("approved_by", "批准人"), ("fee_code", "收费项目"), ("amount", "金额"), ("channel", "渠道"),
                  ("approval_ref", "审批文号"), ("outcome", "结果"), ("level", "评价等级"),
                  ("complaint_id", "投诉编号"), ("item_code", "事项"), ("due_at", "承诺办结"), ("reason", "理由"))
_CHANNELS = {"bank": "银行", "online": "网上", "window_cash": "窗口现金"}
_OUTCOMES = {"approved": "准予", "denied": "不予许可"}


def _t(value: Any) -> str:
    if isinstance(value, datetime):
        from schemas.events import CHINA_TZ

        return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, int | float) and not isinstance(value, bool):
        from rules.context import fmt_time

        return fmt_time(float(value))
    return "-" if value is None else str(value)


def _due(value: Any) -> str:
    """A deadline the way limits are announced: a day-end instant reads "YYYY-MM-DD 24:00"."""
    from rules.context import fmt_time

    if isinstance(value, datetime):
        return fmt_time(value.timestamp())
    return _t(value)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value


class _Masker:
    """Masks the applicant's details wherever they appear, and any ID or mobile number in free text."""

    def __init__(self, facts: dict[str, Any] | None, events: list[Any]) -> None:
        names = set()
        if facts and facts.get("applicant_name"):
            names.add(facts["applicant_name"])
        for ev in events:
            a = getattr(ev, "applicant", None)
            if a is not None and a.name:
                names.add(a.name)
        self.names = sorted(names)

    def text(self, value: str | None) -> str:
        from alerting.masking import mask_text

        return mask_text(value or "", self.names)


def _details(ev: Any, mask: _Masker) -> str:
    parts = []
    for name, label in _DETAIL_FIELDS:
        v = getattr(ev, name, None)
        if v is None:
            continue
        if name == "channel":
            v = _CHANNELS.get(v, v)
        elif name == "outcome":
            v = _OUTCOMES.get(v, v)
        elif name == "due_at":
            v = _t(v)
        parts.append(f"{label} {mask.text(str(v))}")
    materials = getattr(ev, "materials", None)
    if materials:
        parts.append(f"材料 {len(materials)} 项")
    return "，".join(parts)


def gather_history(wh: Any, case_id: str, *, at: datetime | None = None, catalogs_dir: str | None = None,
                   rules_config: str | None = None) -> dict[str, Any] | None:
    """The case's stored story plus the engine's view of its clock; None when nothing is stored for it."""
    from rules.clock import china_date
    from schemas.events import InvalidEvent, decode_event
    from streams.embedded import run_events
    from streams.replay import LIVE_RUN, CatalogChoice, engines_for, order_events
    from warehouse.reads import case_history

    h = case_history(wh, case_id, LIVE_RUN)
    runs = [r["run_id"] for r in wh.query(
        "SELECT DISTINCT run_id FROM findings WHERE case_id = {case_id:String} ORDER BY run_id",
        {"case_id": case_id})]
    if not h["events"] and h["facts"] is None and not runs:
        return None
    findings = [dict(f, run_id=LIVE_RUN) for f in h["findings"]]
    for run in runs:
        if run != LIVE_RUN:
            findings.extend(dict(f, run_id=run, deliveries=[], alerts=[])
                            for f in case_history(wh, case_id, run)["findings"])
    engines = engines_for(CatalogChoice(), catalogs_dir, rules_config)
    naive = naive_tz_from(engines.config.naive_timezone)
    valid_rows = [e["raw"] for e in h["events"] if e["valid"]]
    events, _ = order_events(valid_rows, naive)
    recorded = (h["facts"] or {}).get("catalog_version")
    clock: dict[str, Any] = {}
    decoded: dict[str, Any] = {}
    for e in h["events"]:
        if e["valid"]:
            ev = decode_event(e["raw"], naive_tz=naive)
            if not isinstance(ev, InvalidEvent):
                decoded[e["event_id"] + "|" + e["raw"].hex()] = ev
    if at is not None:  # the clock as it stood then: only what had happened by that instant
        events = [ev for ev in events if ev.occurred_at <= at]
    if events:
        engine = engines.engine(engines.key_for(recorded))
        until = at or max(ev.occurred_at for ev in events)
        st = run_events(engine, events, until=until).states[case_id]
        facts = engine.facts(st)
        pending = []
        for dl in sorted(engine.deadlines(st), key=lambda d: (d.at, d.rule, d.occurrence)):
            if dl.satisfied is not None and dl.satisfied <= dl.at:
                state = "已满足"
            elif st.has_fired(f"{dl.rule}|{dl.occurrence}"):
                state = "已触发"
            else:
                state = "待触发"
            pending.append({"rule": dl.rule, "occurrence": dl.occurrence, "at": dl.at, "state": state})
        clock = {
            "as_of": until, "status": facts.status, "catalog_version": facts.catalog_version,
            "item_code": facts.item_code, "item_name": facts.item_name, "item_kind": facts.item_kind,
            "department": facts.department, "window": facts.window,
            "submitted_at": facts.submitted_at, "accepted_at": facts.accepted_at,
            "clock_start_at": facts.clock_start_at, "promised_due_at": facts.promised_due_at,
            "statutory_due_at": facts.statutory_due_at, "extension_days": facts.extension_days,
            "paused_working_days": facts.paused_working_days, "decided_at": facts.decided_at,
            "completed_at": facts.completed_at, "on_time": facts.on_time,
            "pauses": [{"kind": p.kind, "start": p.start, "end": p.end, "event_id": p.eid,
                        "planned_days": p.planned_days,
                        "start_day": china_date(p.start).isoformat()} for p in st.d.pauses],
            "deadlines": pending,
        }
    return {"case_id": case_id, "facts": h["facts"], "events": h["events"], "decoded": decoded,
            "findings": findings, "runs": runs, "deliveries": h["deliveries"], "alerts": h["alerts"],
            "clock": clock, "replay_order": [ev.event_id for ev in events]}


def _masked_facts(facts: dict[str, Any] | None) -> dict[str, Any] | None:
    from alerting.masking import mask_id_number, mask_name, mask_phone

    if facts is None:
        return None
    out = dict(facts)
    for key, fn in (("applicant_name", mask_name), ("applicant_id_number", mask_id_number),
                    ("applicant_phone", mask_phone)):
        if out.get(key):
            out[key] = fn(out[key])
    return out


def history_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The history as plain JSON, personal data masked (what ``--json`` prints)."""
    mask = _Masker(doc["facts"], list(doc["decoded"].values()))
    events = []
    for e in doc["events"]:
        ev = doc["decoded"].get(e["event_id"] + "|" + e["raw"].hex())
        events.append({
            "event_id": e["event_id"], "event_type": e["event_type"], "occurred_at": _iso(e["occurred_at"]),
            "recorded_at": _iso(e["recorded_at"]), "received_at": _iso(e["received_at"]), "source": e["source"],
            "officer_id": e["officer_id"] or None, "valid": e["valid"], "error": mask.text(e["error"]) or None,
            "details": _details(ev, mask) if ev is not None else None,
            "notes": [{"kind": n["kind"], "message": mask.text(n["message"])} for n in e["notes"]],
        })
    clock = {k: (_iso(v) if k not in ("pauses", "deadlines") else v) for k, v in doc["clock"].items()}
    if clock:
        clock["pauses"] = [dict(p, start=_iso(p["start"]), end=_iso(p["end"])) for p in doc["clock"]["pauses"]]
        clock["deadlines"] = [dict(d, at=_iso(d["at"])) for d in doc["clock"]["deadlines"]]
    findings = [{
        "run_id": f["run_id"], "finding_id": f["finding_id"], "rule": f["rule"], "severity": f["severity"],
        "fired_at": _iso(f["fired_at"]), "deadline": _iso(f["deadline"]), "event_id": f["event_id"],
        "catalog_version": f["catalog_version"], "message": mask.text(f["message"]),
        "deliveries": [{"delivery_id": d["delivery_id"], "attempt": d["attempt"], "result": d["result"],
                        "channel": d["channel"], "kind": d["kind"], "attempted_at": _iso(d["attempted_at"])}
                       for d in f.get("deliveries", [])],
    } for f in doc["findings"]]
    facts = _masked_facts(doc["facts"])
    if facts is not None:
        facts = {k: _iso(v) if isinstance(v, datetime) else (str(v) if hasattr(v, "as_tuple") else v)
                 for k, v in facts.items()}
    return {"case_id": doc["case_id"], "facts": facts, "clock": clock, "events": events, "findings": findings,
            "runs": doc["runs"]}


def print_history(c: Console, doc: dict[str, Any]) -> None:
    from rules.registry import RULES, SEVERITY_NAMES

    j = history_json(doc)
    facts, clock = j["facts"] or {}, doc["clock"]
    c.print(f"[bold]办件 {doc['case_id']}[/]  {facts.get('item_name') or clock.get('item_name') or ''}"
            f"（{facts.get('item_code') or clock.get('item_code') or '-'}）", highlight=False)
    c.print(f"部门 {facts.get('department') or clock.get('department') or '-'}，窗口 "
            f"{facts.get('window') or clock.get('window') or '-'}，区划 {facts.get('region_code') or '-'}；"
            f"申请人 {facts.get('applicant_name') or '-'}，证件 {facts.get('applicant_id_number') or '-'}，"
            f"电话 {facts.get('applicant_phone') or '-'}", highlight=False)

    t = Table(title="事件（按事件时间）", show_lines=False)
    for col in ("发生时间", "记录时间", "事件", "编号", "经办人", "内容", "有效", "数据说明"):
        t.add_column(col)
    for e in j["events"]:
        ok = "有效" if e["valid"] else f"[red]无效[/] {e['error'] or ''}"
        t.add_row(_t(datetime.fromisoformat(e["occurred_at"])) if e["occurred_at"] else "-",
                  _t(datetime.fromisoformat(e["recorded_at"])) if e["recorded_at"] else "-",
                  EVENT_NAMES.get(e["event_type"], e["event_type"] or "?"), e["event_id"], e["officer_id"] or "-",
                  e["details"] or "", ok, "；".join(f"{n['kind']}：{n['message']}" for n in e["notes"]))
    c.print(t)

    if clock:
        kind = {"on_the_spot": "即办件", "promised": "承诺件"}.get(clock["item_kind"] or "", "-")
        ck = Table(title=f"计时状态（引擎按目录 {clock['catalog_version'] or '-'} 计算，截至 {_t(clock['as_of'])}）",
                   show_header=False)
        ck.add_column("项目")
        ck.add_column("值")
        for label, value in (
            ("状态", STATUS_NAMES.get(clock["status"], clock["status"])), ("办件类型", kind),
            ("收件", _t(clock["submitted_at"])), ("受理", _t(clock["accepted_at"])),
            ("计时起点", _t(clock["clock_start_at"])), ("承诺期限", _due(clock["promised_due_at"])),
            ("法定期限", _due(clock["statutory_due_at"])), ("延期（工作日）", str(clock["extension_days"])),
            ("暂停（工作日）", str(clock["paused_working_days"])), ("决定", _t(clock["decided_at"])),
            ("办结", _t(clock["completed_at"])),
            ("按时办结", {True: "是", False: "否", None: "-"}[clock["on_time"]]),
        ):
            ck.add_row(label, value)
        for p in clock["pauses"]:
            end = _t(p["end"]) if p["end"] is not None else "未结束"
            plan = f"，计划 {p['planned_days']} 个工作日" if p["planned_days"] else ""
            ck.add_row(f"暂停：{PAUSE_NAMES.get(p['kind'], p['kind'])}",
                       f"{_t(p['start'])} 至 {end}（{p['event_id']}{plan}）")
        c.print(ck)
        if clock["deadlines"]:
            dt = Table(title="时限")
            for col in ("规则", "名称", "对象", "时限", "状态"):
                dt.add_column(col)
            for d in clock["deadlines"]:
                info = RULES.get(d["rule"])
                occ = d["occurrence"] if d["occurrence"] != d["rule"] else ""
                dt.add_row(d["rule"], info.name if info else "", occ, _t(d["at"]), d["state"])
            c.print(dt)

    ft = Table(title="监察发现（实时与各次重放）", show_lines=True)
    for col in ("运行", "规则", "等级", "触发时间", "目录版本", "说明", "告警投递"):
        ft.add_column(col)
    for f in j["findings"]:
        info = RULES.get(f["rule"])
        run = "实时" if f["run_id"] == "live" else f"重放 {f['run_id']}"
        deliveries = "；".join(f"{d['channel']} {d['result']} {d['attempted_at'][:19]}" for d in f["deliveries"])
        ft.add_row(run, f"{f['rule']}\n{info.name if info else ''}", SEVERITY_NAMES.get(f["severity"], f["severity"]),
                   _t(datetime.fromisoformat(f["fired_at"])), f["catalog_version"] or "-", f["message"],
                   deliveries or "-")
    if j["findings"]:
        c.print(ft)
    else:
        c.print("无监察发现")


def history_command(
    case_id: Annotated[str, typer.Argument(help="办件编号")],
    at: Annotated[str | None, typer.Option("--at", help="计时状态截至此时刻（按事件时间；ISO 8601，带时区；默认该办件最后一个事件）")] = None,
    catalogs_dir: Annotated[Path | None, typer.Option("--catalogs", help="目录历史版本目录（默认 config/catalogs）")] = None,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="监察参数文件")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="内嵌数据仓库目录（默认 ./data）")] = None,
    clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", envvar="CLICKHOUSE_URL",
                                                       help="ClickHouse 服务器地址（clickhouse://…）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出")] = False,
) -> None:
    """显示一个办件的全过程：事件、计时状态、各次运行的监察发现与告警投递（个人信息已脱敏）。"""
    from streams.replay import ReplayError
    from warehouse import WarehouseError, open_warehouse

    try:
        wh = open_warehouse(warehouse_target(data_dir, clickhouse_url))
        try:
            wh.migrate()
            doc = gather_history(wh, case_id, at=parse_instant(at),
                                 catalogs_dir=str(catalogs_dir) if catalogs_dir else None,
                                 rules_config=str(rules_config) if rules_config else None)
        finally:
            wh.close()
    except (WarehouseError, ReplayError, OSError, ValueError) as exc:
        console.print(f"[red]错误[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if doc is None:
        console.print(f"[red]未找到办件[/] {case_id}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(msgspec.json.encode(history_json(doc)).decode() + "\n")
        return
    print_history(Console(), doc)


def register(app: typer.Typer) -> None:
    case_app = typer.Typer(help="办件查询：全过程时间线（审计）。", no_args_is_help=True)
    case_app.command("history")(history_command)
    app.add_typer(case_app, name="case")
