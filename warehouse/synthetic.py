"""Deterministic synthetic traffic for the warehouse's tests and benchmark.

It produces what a driver hands the sink — raw lines with their decoded events (some invalid, some
sent twice), the case facts after each applied event, findings and notes — without running the rules
engine, so the warehouse can be tested and measured on its own. The facts and findings are plausible,
not authoritative (the engine decides those); what matters here is their shape, their volume and the
known answers (how many distinct lines, cases, versions, findings) that tests compare against.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.facts import CaseFacts
from rules.findings import Finding, Note, finding_id
from schemas.events import (
    CHINA_TZ,
    Accepted,
    ComplaintFiled,
    Completed,
    Decided,
    Delivered,
    FeeAssessed,
    FeePaid,
    IntakeRejected,
    InvalidEvent,
    Rated,
    StepCompleted,
    Submitted,
    SupplementReceived,
    SupplementRequested,
    decode_event,
    encode_event,
)
from schemas.events import Applicant as _Applicant

DEPARTMENTS = {
    "市场监管局": ("市场监管窗口1", "市场监管窗口2"),
    "住建局": ("住建窗口",),
    "公安局": ("公安窗口1", "公安窗口2"),
    "人社局": ("人社窗口",),
    "卫健委": ("卫健窗口",),
}
# code, name, kind, department, promised working days (calendar days here), fee
ITEMS = (
    ("SJ-001", "个体工商户设立登记", "on_the_spot", "市场监管局", 0, None),
    ("SJ-002", "食品经营许可", "promised", "市场监管局", 10, None),
    ("ZJ-001", "建筑工程施工许可", "promised", "住建局", 7, Decimal("200.00")),
    ("GA-001", "居民身份证换领", "on_the_spot", "公安局", 0, Decimal("20.00")),
    ("GA-002", "出入境证件签发", "promised", "公安局", 7, Decimal("120.00")),
    ("RS-001", "社会保障卡申领", "on_the_spot", "人社局", 0, None),
    ("WJ-001", "医疗机构执业登记", "promised", "卫健委", 15, None),
)
REGIONS = ("330102", "330105", "330106")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英"
STEPS = ("承办", "审查", "审核", "批准")
_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_number(rng: random.Random) -> str:
    body = f"{rng.choice(REGIONS)}{rng.randint(1960, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _W, strict=True)) % 11]


@dataclass
class Step:
    """One input line and what the engine would hand the sink for it."""

    item: tuple[Any, bytes, datetime]  # (event or InvalidEvent, raw bytes, received_at)
    facts: CaseFacts | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


@dataclass
class Synthetic:
    steps: list[Step]
    lines: int  # input lines, duplicates included
    distinct_lines: int  # distinct raw lines (what `events` must hold)
    valid_events: int  # distinct valid event ids
    invalid_lines: int  # distinct invalid lines
    cases: int
    final_versions: dict[str, int]  # case -> highest version
    finding_ids: set[str]
    notes: int

    @property
    def items(self) -> list[tuple[Any, bytes, datetime]]:
        return [s.item for s in self.steps]


def _case_events(rng: random.Random, case_id: str, t0: datetime) -> list[Any]:
    code, _name, kind, dept, days, fee = rng.choice(ITEMS)
    window = rng.choice(DEPARTMENTS[dept])
    region = rng.choice(REGIONS)
    src = f"approval-{dept}"
    applicant = _Applicant(name=rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                           id_number=_id_number(rng), phone=f"1{rng.choice('3589')}{rng.randint(0, 999999999):09d}")
    officers = [f"OFF-{dept[:2]}-{rng.randint(1, 30):02d}" for _ in range(4)]
    n = 0

    def ev(cls: type, at: datetime, **kw: Any) -> Any:
        nonlocal n
        n += 1
        return cls(event_id=f"{case_id}-{n:02d}", case_id=case_id, occurred_at=at, source=src,
                   recorded_at=at + timedelta(seconds=rng.randint(0, 90)), **kw)

    intake = {"item_code": code, "region_code": region, "department": dept, "window": window}
    out = [ev(Submitted, t0, applicant=applicant, **intake)]
    t = t0 + timedelta(minutes=rng.randint(1, 30))
    if rng.random() < 0.03:
        out.append(ev(IntakeRejected, t, officer_id=officers[0], reason="材料不符合法定形式"))
        return out
    due = None if kind == "on_the_spot" else t + timedelta(days=days)
    out.append(ev(Accepted, t, officer_id=officers[0], due_at=due, **intake))
    if kind == "on_the_spot":
        t += timedelta(minutes=rng.randint(5, 50))
        out.append(ev(StepCompleted, t, officer_id=officers[1], step="审查"))
        if fee:
            out.append(ev(FeeAssessed, t, fee_code=f"{code}-F1", amount=fee))
            out.append(ev(FeePaid, t + timedelta(minutes=3), fee_code=f"{code}-F1", amount=fee,
                          channel="window_cash" if rng.random() < 0.02 else "bank"))
        late = rng.random() < 0.05
        t += timedelta(days=1) if late else timedelta(minutes=rng.randint(5, 40))
        out.append(ev(Decided, t, officer_id=officers[2], outcome="approved"))
        out.append(ev(Completed, t + timedelta(minutes=1), officer_id=officers[2]))
    else:
        if rng.random() < 0.1:
            out.append(ev(SupplementRequested, t + timedelta(hours=2), officer_id=officers[1], materials=["身份证明"]))
            out.append(ev(SupplementReceived, t + timedelta(days=1, hours=3)))
            t += timedelta(days=1, hours=3)
        for i, step in enumerate(STEPS):
            t += timedelta(hours=rng.randint(2, 30))
            out.append(ev(StepCompleted, t, officer_id=officers[min(i, 3)], step=step))
        if fee:
            out.append(ev(FeeAssessed, t, fee_code=f"{code}-F1", amount=fee))
            out.append(ev(FeePaid, t + timedelta(hours=1), fee_code=f"{code}-F1", amount=fee, channel="online"))
        t += timedelta(hours=rng.randint(1, 80))
        out.append(ev(Decided, t, officer_id=officers[3], outcome="approved" if rng.random() < 0.95 else "denied"))
        out.append(ev(Completed, t + timedelta(minutes=5), officer_id=officers[3]))
    out.append(ev(Delivered, t + timedelta(hours=1)))
    if rng.random() < 0.6:
        out.append(ev(Rated, t + timedelta(hours=2), level=rng.choice((5, 5, 5, 4, 4, 3, 2, 1))))
    if rng.random() < 0.01:
        out.append(ev(ComplaintFiled, t + timedelta(days=1), complaint_id=f"TS-{case_id}"))
    return out


def _facts_after(state: dict[str, Any], e: Any, version: int) -> CaseFacts:
    tag = type(e).__struct_config__.tag
    at = e.occurred_at
    if tag in ("submitted", "accepted"):
        for k in ("item_code", "department", "window", "region_code"):
            state[k] = getattr(e, k)
        item = next(i for i in ITEMS if i[0] == e.item_code)
        state.update(item_name=item[1], item_kind=item[2], catalog_version="2026.11")
        if e.applicant is not None:
            state.update(applicant_name=e.applicant.name, applicant_id_number=e.applicant.id_number,
                         applicant_phone=e.applicant.phone)
        if tag == "submitted":
            state["submitted_at"] = at
            if state["status"] == "unknown":
                state["status"] = "submitted"
        else:
            state.update(accepted_at=at, clock_start_at=at, status="accepted", promised_due_at=e.due_at,
                         statutory_due_at=at + timedelta(days=28))
    elif tag == "intake_rejected":
        state["status"] = "rejected"
    elif tag == "supplement_requested":
        state.update(status="paused", supplement_count=state["supplement_count"] + 1)
    elif tag == "supplement_received":
        state["status"] = "accepted"
    elif tag == "fee_assessed":
        state["fee_assessed"] += e.amount
    elif tag == "fee_paid":
        state["fee_paid"] += e.amount
    elif tag == "decided":
        state.update(status="decided", decided_at=at, outcome=e.outcome)
    elif tag == "completed":
        due = state["promised_due_at"]
        if state["item_kind"] == "on_the_spot":
            on_time = at.date() == state["accepted_at"].date()
        else:
            on_time = due is None or at <= due
        state.update(status="completed", completed_at=at, on_time=on_time)
    elif tag == "delivered":
        state["delivered_at"] = at
    elif tag == "rated":
        state["rating_level"] = e.level
    elif tag == "complaint_filed":
        state["complaint_count"] += 1
    if e.officer_id and e.officer_id not in state["officers"]:
        state["officers"] = (*state["officers"], e.officer_id)
    state["last_event_at"] = max(state["last_event_at"] or at, at)
    return CaseFacts(case_id=state["case_id"], version=version, **{k: v for k, v in state.items() if k != "case_id"})


def _blank(case_id: str) -> dict[str, Any]:
    return dict(case_id=case_id, status="unknown", item_code=None, item_name=None, item_kind=None,
                department=None, window=None, region_code=None, catalog_version=None, applicant_name=None,
                applicant_id_number=None, applicant_phone=None, officers=(), submitted_at=None,
                accepted_at=None, clock_start_at=None, promised_due_at=None, statutory_due_at=None,
                decided_at=None, outcome=None, completed_at=None, delivered_at=None, paused_working_days=0,
                supplement_count=0, extension_days=0, fee_assessed=Decimal(0), fee_paid=Decimal(0),
                fee_waived=Decimal(0), fee_refunded=Decimal(0), rating_level=None, complaint_count=0,
                on_time=None, last_event_at=None)


def _finding(rule: str, severity: str, state: dict[str, Any], at: datetime, occurrence: str, message: str,
             e: Any = None) -> Finding:
    case_id = state["case_id"]
    return Finding(finding_id=finding_id(case_id, rule, occurrence), rule=rule, severity=severity,  # type: ignore[arg-type]
                   case_id=case_id, item_code=state["item_code"], department=state["department"],
                   window=state["window"], region_code=state["region_code"],
                   officer_id=getattr(e, "officer_id", None), fired_at=at, message=message,
                   basis="synthetic", catalog_version="2026.11", occurrence=occurrence,
                   event_id=getattr(e, "event_id", None))


def _findings_for(state: dict[str, Any], e: Any) -> list[Finding]:
    tag = type(e).__struct_config__.tag
    out = []
    if tag == "rated" and e.level <= 2:
        out.append(_finding("QUALITY.BAD_RATING", "yellow", state, e.occurred_at, e.event_id,
                            f"办件 {e.case_id} 收到差评（{e.level} 级），须在 15 个工作日内整改。", e))
    elif tag == "fee_paid" and e.channel == "window_cash":
        out.append(_finding("FEE.CASH_AT_WINDOW", "red", state, e.occurred_at, e.event_id,
                            f"办件 {e.case_id} 在窗口收取现金 {e.amount} 元，违反票款分离。", e))
    elif tag == "completed" and state.get("on_time") is False:
        if state["item_kind"] == "on_the_spot":
            out.append(_finding("PROCEDURE.ON_THE_SPOT_LATE", "yellow", state, e.occurred_at, "PROCEDURE.ON_THE_SPOT_LATE",
                                f"即办件 {e.case_id} 未在受理当日办结。"))
        else:
            due = state["promised_due_at"]
            out.append(_finding("TIMEOUT.PROMISED_OVERDUE", "red", state, due, "TIMEOUT.PROMISED_OVERDUE",
                                f"办件 {e.case_id} 超过承诺时限 {due:%Y-%m-%d %H:%M} 仍未办结。"))
    return out


def generate(n_events: int, seed: int = 7, start: datetime | None = None, invalid_share: float = 0.005,
             duplicate_share: float = 0.01, spread_days: int = 60) -> Synthetic:
    """About ``n_events`` input lines for cases submitted over ``spread_days`` from ``start``.

    Lines arrive in event-time order with a small random delay; ``duplicate_share`` of the valid lines
    are sent a second time later on, and ``invalid_share`` are broken (bad JSON, a value out of range,
    a time without offset).
    """
    rng = random.Random(seed)
    start = start or datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)
    per_case = 9.08  # measured: lines per case of this traffic, so that about n_events lines come out
    n_cases = max(1, int(n_events / per_case / (1 + duplicate_share + invalid_share)))
    span = spread_days * 86400
    arrivals: list[tuple[datetime, int, Any]] = []
    seq = 0
    for i in range(n_cases):
        t0 = start + timedelta(seconds=int(span * i / n_cases) + rng.randint(0, 600))
        case_id = f"{rng.choice(REGIONS)}{t0:%Y%m%d}{i:07d}"
        for e in _case_events(rng, case_id, t0):
            delay = timedelta(seconds=rng.randint(1, 120))
            arrivals.append((e.occurred_at + delay, seq, e))
            seq += 1
            if rng.random() < duplicate_share:
                arrivals.append((e.occurred_at + delay + timedelta(hours=rng.randint(1, 48)), seq, e))
                seq += 1
    n_invalid = int(len(arrivals) * invalid_share)
    for k in range(n_invalid):
        at = start + timedelta(seconds=rng.randint(0, span))
        kind = k % 3
        if kind == 0:
            raw = f'{{"event_type": "accepted", "case_id": "BROKEN-{k}", "occurred_at": "{at.isoformat()}"'.encode()
        elif kind == 1:
            raw = (f'{{"event_type":"rated","event_id":"BAD-{k}","case_id":"BAD-CASE-{k}",'
                   f'"occurred_at":"{at.isoformat()}","source":"approval-x","level":9}}').encode()
        else:
            raw = (f'{{"event_type":"completed","event_id":"NAIVE-{k}","case_id":"BAD-CASE-{k}",'
                   f'"occurred_at":"{at.replace(tzinfo=None).isoformat()}","source":"approval-x"}}').encode()
        arrivals.append((at, seq, raw))
        seq += 1
    arrivals.sort(key=lambda a: (a[0], a[1]))

    states: dict[str, dict[str, Any]] = {}
    versions: dict[str, int] = {}
    applied: set[str] = set()
    seen_raw: set[bytes] = set()
    finding_ids: set[str] = set()
    steps: list[Step] = []
    valid_ids: set[str] = set()
    invalid_raw: set[bytes] = set()
    n_notes = 0
    enc_cache: dict[int, bytes] = {}
    read_batch = 1000  # a driver reads lines in batches and stamps each batch with one received_at
    for position, (_at, _s, obj) in enumerate(arrivals, start=1):
        first = (position - 1) // read_batch * read_batch
        received = arrivals[min(first + read_batch, len(arrivals)) - 1][0]
        if isinstance(obj, bytes):
            inv = decode_event(obj, position=position)
            assert isinstance(inv, InvalidEvent)
            steps.append(Step((inv, obj, received)))
            seen_raw.add(obj)
            invalid_raw.add(obj)
            continue
        e = obj
        raw = enc_cache.get(id(e))
        if raw is None:
            raw = enc_cache[id(e)] = encode_event(e)
        seen_raw.add(raw)
        valid_ids.add(e.event_id)
        if e.event_id in applied:
            note = Note(kind="duplicate_event", case_id=e.case_id, event_id=e.event_id,
                        message=f"事件 {e.event_id} 重复到达，已忽略。")
            n_notes += 1
            steps.append(Step((e, raw, received), notes=[note]))
            continue
        applied.add(e.event_id)
        state = states.get(e.case_id)
        if state is None:
            state = states[e.case_id] = _blank(e.case_id)
        v = versions[e.case_id] = versions.get(e.case_id, 0) + 1
        facts = _facts_after(state, e, v)
        found = [f for f in _findings_for(state, e) if f.finding_id not in finding_ids]
        finding_ids.update(f.finding_id for f in found)
        steps.append(Step((e, raw, received), facts=facts, findings=found))
    return Synthetic(steps=steps, lines=len(steps), distinct_lines=len(seen_raw), valid_events=len(valid_ids),
                     invalid_lines=len(invalid_raw), cases=len(states), final_versions=versions,
                     finding_ids=finding_ids, notes=n_notes)


def chunks(steps: list[Step], chunk: int = 1000) -> list[tuple[list[Any], list[CaseFacts], list[Finding], list[Note]]]:
    """What a streaming driver hands the sink per chunk of lines: the lines, the latest facts of each
    case the chunk touched, the chunk's findings and its notes."""
    out = []
    for i in range(0, len(steps), chunk):
        part = steps[i:i + chunk]
        latest: dict[str, CaseFacts] = {}
        for s in part:
            f = s.facts
            if f is not None:
                cur = latest.get(f.case_id)
                if cur is None or f.version > cur.version:
                    latest[f.case_id] = f
        out.append(([s.item for s in part], list(latest.values()),
                    [f for s in part for f in s.findings], [n for s in part for n in s.notes]))
    return out


def feed(sink: Any, steps: list[Step], chunk: int = 1000, run_id: str = "live") -> None:
    """Hand steps to a sink the way a streaming driver does (see :func:`chunks`)."""
    for items, facts, findings, notes in chunks(steps, chunk):
        sink.add_events(items)
        sink.add_facts(facts)
        if findings:
            sink.add_findings(findings, run_id=run_id)
        if notes:
            sink.add_notes(notes, run_id=run_id)


def to_jsonl(steps: list[Step]) -> bytes:
    """The input as a JSON Lines file (for subprocess tests that read it back with decode_event)."""
    return b"\n".join(s.item[1] for s in steps) + b"\n"


__all__ = ["Step", "Synthetic", "chunks", "feed", "generate", "to_jsonl"]
