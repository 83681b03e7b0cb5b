"""Helpers for the engine's table-driven tests: write a case as a few lines, run it, read findings."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from rules.calendar import WorkCalendar
from rules.catalog import load_catalog
from rules.config import RuleConfig
from rules.engine import Engine
from rules.findings import Finding
from schemas.events import AnyEvent, InvalidEvent, decode_event
from streams.embedded import run_events

MINI = Path(__file__).parent / "fixtures" / "mini_catalog.yaml"


def engine(**config: object) -> Engine:
    return Engine(load_catalog(MINI), WorkCalendar.default(), RuleConfig(**config))  # type: ignore[arg-type]


def at(text: str) -> str:
    """'2026-02-10 10:00' in China time -> ISO 8601 with offset."""
    return datetime.fromisoformat(text).isoformat() + "+08:00" if "+" not in text else text


class CaseScript:
    """Events of one case, in the order written; ``e(...)`` adds one with a fresh id."""

    def __init__(self, case_id: str = "C1", item: str = "T-PROM5"):
        self.case_id = case_id
        self.item = item
        self.events: list[AnyEvent] = []

    def e(self, typ: str, when: str, **fields: object) -> CaseScript:
        doc = {"event_id": f"{self.case_id}-{len(self.events) + 1}", "event_type": typ, "case_id": self.case_id,
               "occurred_at": at(when), "source": "test", **fields}
        if typ in ("submitted", "accepted"):
            doc.setdefault("item_code", self.item)
            doc.setdefault("department", "自然资源和规划局")
            doc.setdefault("window", "规划窗口")
            doc.setdefault("region_code", "610113")
        ev = decode_event(json.dumps(doc, ensure_ascii=False))
        assert not isinstance(ev, InvalidEvent), ev.describe()
        self.events.append(ev)
        return self

    def accepted_on(self, when: str) -> CaseScript:
        return self.e("submitted", when).e("accepted", when)


def run(events: list[AnyEvent], until: str, eng: Engine | None = None) -> list[Finding]:
    return run_events(eng or engine(), events, until=datetime.fromisoformat(at(until))).findings


def rules_of(findings: list[Finding], prefix: str = "") -> dict[str, str]:
    """rule -> fired_at in China time, for the rules starting with ``prefix``."""
    out = {}
    for f in findings:
        if f.rule.startswith(prefix):
            out[f.rule] = f.fired_at.astimezone(datetime.fromisoformat("2026-01-01T00:00+08:00").tzinfo).strftime(
                "%Y-%m-%d %H:%M")
    return out
