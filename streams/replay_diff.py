"""What a replay found differently from the live run, per rule and case, and the likely reasons why.

Pure functions over finding rows (dicts with the ``findings`` table's columns, as
``warehouse.reads`` and ``streams.replay.stored_findings`` return them) and over plain evidence about
each differing case (its stored lines with their times, the catalog versions and item definitions
each side used). No I/O: the command gathers the evidence, this module compares and explains, so the
explanations can be tested on hand-made rows.

Findings are matched by ``finding_id`` (case, rule and occurrence: the same in every run). A finding
present on both sides whose ``fired_at`` or severity differs is listed as *changed*: the same violation
seen at another instant (a moved deadline, typically).

Reasons detected, most specific first:

* ``catalog_change`` — the two sides judged the case under different catalogs: different versions, or
  (``--catalog FILE``) the same version name with another definition of the case's item. The changed
  fields of the item are listed.
* ``late_event`` — an event that happened at or before the finding's instant was recorded after it:
  live, the clock passed the deadline before the event was there; the replay knows it.
* ``backdated`` — an event recorded long after it happened (over the back-dating tolerance, 补录).
* ``conflicting_duplicate`` — one event id stored with two different contents; live applies the one
  that arrived first, the replay the earlier in event time.
* ``horizon`` — the live finding fired after the replay's clock horizon (the replay stopped earlier).
* ``recorded_after`` — (only when nothing above applies) events of the case recorded after the finding
  fired, which a live run could not have seen then.
* ``unknown`` — none of the above: thresholds or the engine itself may differ between the runs.

Finding texts in the JSON form are masked once more (ID and mobile numbers, labelled names): a replay
that was not stored never went through the warehouse's scrubbing.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from alerting.masking import mask_text
from rules.catalog import Item

Kind = Literal["only_live", "only_replay", "changed"]

KIND_NAMES: dict[str, str] = {"only_live": "仅实时触发", "only_replay": "仅重放触发", "changed": "触发时间或等级不同"}

REASON_NAMES: dict[str, str] = {
    "catalog_change": "目录不同",
    "late_event": "迟到事件",
    "backdated": "补录事件",
    "conflicting_duplicate": "同一事件编号内容不同",
    "horizon": "时钟截止不同",
    "recorded_after": "触发后才记录的事件",
    "unknown": "未能自动判断",
}

ITEM_FIELD_NAMES: dict[str, str] = {
    "name": "事项名称", "department": "部门", "window": "窗口", "kind": "办件类型",
    "promised_days": "承诺时限（工作日）", "statutory_days": "法定时限（工作日）", "steps": "办理环节",
    "step_limits": "环节时限（工作日）", "separate_officers": "审批分离环节", "fees": "收费项目",
    "min_minutes": "最短办理时间（分钟）", "basis": "设定依据",
}
_KIND_VALUES = {"on_the_spot": "即办件", "promised": "承诺件"}


@dataclass(frozen=True)
class Reason:
    code: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "name": REASON_NAMES.get(self.code, self.code), "text": self.text}


@dataclass
class DiffEntry:
    kind: Kind
    rule: str
    case_id: str
    finding_id: str
    live: dict[str, Any] | None
    replay: dict[str, Any] | None
    reasons: list[Reason] = field(default_factory=list)

    @property
    def fired_at(self) -> datetime:
        row = self.live if self.live is not None else self.replay
        assert row is not None
        return row["fired_at"]

    def to_json(self) -> dict[str, Any]:
        def side(row: dict[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            return {"fired_at": _iso(row.get("fired_at")), "severity": row.get("severity"),
                    "catalog_version": row.get("catalog_version"), "deadline": _iso(row.get("deadline")),
                    "event_id": row.get("event_id"), "message": mask_text(row.get("message") or "")}

        return {"kind": self.kind, "rule": self.rule, "case_id": self.case_id, "finding_id": self.finding_id,
                "live": side(self.live), "replay": side(self.replay),
                "reasons": [r.to_json() for r in self.reasons]}


@dataclass
class RuleSummary:
    rule: str
    only_live: list[str] = field(default_factory=list)  # case ids (one per finding, sorted)
    only_replay: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def cases(self) -> list[str]:
        return sorted(set(self.only_live) | set(self.only_replay) | set(self.changed))

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "only_live": len(self.only_live), "only_replay": len(self.only_replay),
                "changed": len(self.changed), "cases": self.cases}


@dataclass
class FindingsDiff:
    entries: list[DiffEntry]
    live_count: int
    replay_count: int
    same: int

    @property
    def empty(self) -> bool:
        return not self.entries

    def cases(self) -> list[str]:
        return sorted({e.case_id for e in self.entries})

    def by_rule(self) -> dict[str, RuleSummary]:
        out: dict[str, RuleSummary] = {}
        for e in self.entries:
            s = out.setdefault(e.rule, RuleSummary(e.rule))
            getattr(s, e.kind).append(e.case_id)
        for s in out.values():
            s.only_live.sort()
            s.only_replay.sort()
            s.changed.sort()
        return dict(sorted(out.items()))

    def reasons(self) -> Counter[str]:
        return Counter(r.code for e in self.entries for r in e.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"live_findings": self.live_count, "replay_findings": self.replay_count, "same": self.same,
                "only_live": sum(e.kind == "only_live" for e in self.entries),
                "only_replay": sum(e.kind == "only_replay" for e in self.entries),
                "changed": sum(e.kind == "changed" for e in self.entries),
                "cases": self.cases(), "by_rule": [s.to_json() for s in self.by_rule().values()],
                "reasons": dict(sorted(self.reasons().items())),
                "entries": [e.to_json() for e in self.entries]}


@dataclass
class CaseEvidence:
    """What is known about one differing case, gathered by the caller."""

    events: Sequence[Mapping[str, Any]] = ()  # event_id, event_type, occurred_at, recorded_at, received_at,
    #                                           valid, raw_hash (stored lines, valid or not)
    live_version: str | None = None  # catalog version the live run used (recorded)
    replay_version: str | None = None  # catalog version the replay applied
    item_code: str | None = None
    item_changes: Sequence[str] = ()  # how the item differs between the two catalogs (item_changes())
    replay_catalog_label: str | None = None  # e.g. "指定目录文件 /tmp/x.yaml" when the replay was told one


def _iso(t: Any) -> str | None:
    return t.isoformat() if isinstance(t, datetime) else None


def _instant(t: datetime | None, precision_ms: int) -> int | None:
    """An instant at the store's precision (milliseconds, or seconds on old servers), for comparing."""
    if t is None:
        return None
    return math.floor(round(t.timestamp() * 1000, 3) / precision_ms)


def compare(live: Iterable[Mapping[str, Any]], replay: Iterable[Mapping[str, Any]], *,
            precision_ms: int = 1) -> FindingsDiff:
    """Match findings by id; what is on one side only, or differs in time or severity, is an entry."""
    lv = {r["finding_id"]: dict(r) for r in live}
    rp = {r["finding_id"]: dict(r) for r in replay}
    entries: list[DiffEntry] = []
    same = 0
    for fid in sorted(lv.keys() | rp.keys()):
        a, b = lv.get(fid), rp.get(fid)
        if a is None:
            assert b is not None
            entries.append(DiffEntry("only_replay", b["rule"], b["case_id"], fid, None, b))
        elif b is None:
            entries.append(DiffEntry("only_live", a["rule"], a["case_id"], fid, a, None))
        elif (_instant(a["fired_at"], precision_ms) != _instant(b["fired_at"], precision_ms)
              or a.get("severity") != b.get("severity")):
            entries.append(DiffEntry("changed", a["rule"], a["case_id"], fid, a, b))
        else:
            same += 1
    entries.sort(key=lambda e: (e.rule, e.case_id, e.kind, e.finding_id))
    return FindingsDiff(entries, len(lv), len(rp), same)


def fmt_time(t: datetime | None) -> str:
    if t is None:
        return "-"
    from schemas.events import CHINA_TZ

    return t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _delay_text(d: timedelta) -> str:
    hours = d.total_seconds() / 3600
    if hours >= 48:
        return f"{hours / 24:.1f} 天"
    if hours >= 1:
        return f"{hours:.1f} 小时"
    return f"{max(d.total_seconds(), 0) / 60:.0f} 分钟"


def _recorded(ev: Mapping[str, Any]) -> datetime | None:
    return ev.get("recorded_at") or ev.get("received_at")


def explain_entry(entry: DiffEntry, ev: CaseEvidence | None, *, backdate_tolerance: timedelta,
                  replay_until: datetime | None = None) -> list[Reason]:
    """The reasons this difference can be explained by, most specific first (at least one)."""
    reasons: list[Reason] = []
    t = entry.fired_at
    live_row, replay_row = entry.live, entry.replay
    live_v = (live_row or {}).get("catalog_version") or (ev.live_version if ev else None)
    replay_v = (replay_row or {}).get("catalog_version") or (ev.replay_version if ev else None)
    if ev is not None and ev.item_changes:
        label = f"（{ev.replay_catalog_label}）" if ev.replay_catalog_label else ""
        versions = (f"实时使用目录版本 {live_v or '-'}，重放使用 {replay_v or '-'}{label}"
                    if live_v != replay_v else f"目录版本同为 {live_v or '-'}，但重放按另一份目录执行{label}")
        reasons.append(Reason("catalog_change", f"{versions}；事项 {ev.item_code} 不同："
                                                + "；".join(ev.item_changes)))
    elif live_v and replay_v and live_v != replay_v:
        reasons.append(Reason("catalog_change", f"实时使用目录版本 {live_v}，重放使用 {replay_v}"))
    events = [e for e in (ev.events if ev is not None else ()) if e.get("valid", True)]
    late = [e for e in events
            if e["occurred_at"] <= t and (rec := _recorded(e)) is not None and rec > t]
    if late:
        shown = late[:3]
        more = f" 等 {len(late)} 条" if len(late) > 3 else ""
        reasons.append(Reason("late_event", "；".join(
            f"事件 {e['event_id']}（{e['event_type']}）发生于 {fmt_time(e['occurred_at'])}，"
            f"{fmt_time(_recorded(e))} 才记录，晚于触发时间 {fmt_time(t)}" for e in shown) + more))
    back = [e for e in events if e["occurred_at"] <= t and (rec := _recorded(e)) is not None
            and rec - e["occurred_at"] > backdate_tolerance]
    if back:
        shown = back[:3]
        more = f" 等 {len(back)} 条" if len(back) > 3 else ""
        reasons.append(Reason("backdated", "；".join(
            f"事件 {e['event_id']}（{e['event_type']}）发生后 {_delay_text(_recorded(e) - e['occurred_at'])}"
            "才记录" for e in shown) + more))
    contents: dict[str, set[Any]] = defaultdict(set)
    for e in (ev.events if ev is not None else ()):
        contents[e["event_id"]].add(e.get("raw_hash"))
    twice = sorted(eid for eid, hashes in contents.items() if len(hashes) > 1)
    if twice:
        reasons.append(Reason("conflicting_duplicate",
                              f"事件编号 {'、'.join(twice[:3])} 以不同内容重复发送：实时按到达先后取用，重放按事件时间取用"))
    if entry.kind == "only_live" and replay_until is not None and t > replay_until:
        reasons.append(Reason("horizon", f"实时触发于 {fmt_time(t)}，晚于重放时钟截止时间 {fmt_time(replay_until)}"))
    if not reasons:
        after = [e for e in events if (rec := _recorded(e)) is not None and rec > t]
        if after:
            last = max(_recorded(e) for e in after)  # type: ignore[type-var]
            reasons.append(Reason("recorded_after", f"办件有 {len(after)} 条事件在触发时间 {fmt_time(t)} 之后才记录"
                                                    f"（最晚 {fmt_time(last)}）"))
    if not reasons:
        reasons.append(Reason("unknown", "事件与目录均无可见差异；可能是监察参数或引擎版本不同"))
    return reasons


def explain(diff: FindingsDiff, evidence: Mapping[str, CaseEvidence], *, backdate_tolerance: timedelta,
            replay_until: datetime | None = None) -> FindingsDiff:
    """Fill every entry's reasons from the evidence of its case; returns the same diff."""
    for e in diff.entries:
        e.reasons = explain_entry(e, evidence.get(e.case_id), backdate_tolerance=backdate_tolerance,
                                  replay_until=replay_until)
    return diff


def _value(name: str, v: Any) -> str:
    if v is None or v == () or v == {}:
        return "无"
    if name == "kind":
        return _KIND_VALUES.get(v, str(v))
    if name == "fees":
        return "、".join(f"{f.code} {f.amount} 元" for f in v)
    if name == "steps":
        return "→".join(v)
    if name == "step_limits":
        return "、".join(f"{k} {d}" for k, d in sorted(v.items()))
    if name == "separate_officers":
        return "、".join(f"{a}/{b}" for a, b in v)
    return str(v)


def item_changes(old: Item | None, new: Item | None) -> list[str]:
    """How an item's definition differs between two catalogs, one Chinese phrase per changed field."""
    if old is None and new is None:
        return []
    if old is None:
        return ["实时所用目录中没有该事项"]
    if new is None:
        return ["重放所用目录中没有该事项"]
    out = []
    for name, label in ITEM_FIELD_NAMES.items():
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            out.append(f"{label} {_value(name, a)} → {_value(name, b)}")
    return out
