"""Demo data for the dashboard tests: a chDB warehouse filled the way a live center fills it.

Simulated traffic (with injected violations and a few malformed lines) goes through the real
pieces — the event decoder, the embedded driver with the rules engine, the warehouse's ``Sink`` and
the alerting dispatcher with its warehouse delivery log — so every panel query is tested against
tables as the pipeline writes them, not against rows written by hand to suit the queries.

The dashboards are looked at "as of" ``DemoInfo.now``, a busy working afternoon in the middle of
the simulated month: alerts exist for the findings fired by then, some acknowledged, some resolved,
and some SMS deliveries failed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import CHINA_TZ

NOW = datetime(2026, 10, 28, 17, 0, tzinfo=CHINA_TZ)  # a Wednesday: accepted and completed cases that day
SIM_START = "2026-10-01"


@dataclass
class DemoInfo:
    """What the tests need to know about the demo data to choose variables and check answers."""

    now: datetime
    start: datetime
    lines: int
    invalid: int
    cases: int
    findings: int
    findings_by_now: int
    alerts: int
    departments: list[str] = field(default_factory=list)
    windows: dict[str, list[str]] = field(default_factory=dict)  # department -> windows
    regions: list[str] = field(default_factory=list)
    busiest_department: str = ""
    case_with_findings: str = ""
    # answers computed here from the engine's own objects, for the tests to compare panels against
    open_now: int = 0
    accepted_today: int = 0
    completed_today: int = 0
    red_today: int = 0
    yellow_today: int = 0


class _FlakySms:
    """An SMS gateway that refuses every third message for good: failed deliveries for the panels."""

    channel = "sms"

    def __init__(self) -> None:
        self._n = itertools.count()

    def send(self, msg: Any) -> Any:
        from alerting.channels import PermanentError
        from alerting.model import SendResult

        if next(self._n) % 3 == 0:
            raise PermanentError("短信网关拒绝：号码状态异常（测试）")
        return SendResult(provider_id=f"sms-{msg.delivery_id[:8]}")

    def close(self) -> None:
        pass


def build_demo_warehouse(directory: Path, cases: int = 1500, days: int = 30, seed: int = 11) -> DemoInfo:
    """Fill a fresh chDB warehouse in ``directory``; the warehouse is closed again on return."""
    from alerting import JsonlDeliveryLog, acknowledge, load_alerting_config, resolve
    from alerting.channels.outbox import OutboxChannel
    from alerting.dispatcher import Dispatcher
    from alerting.log_warehouse import delivery_row, lifecycle_row
    from alerting.model import AlertState
    from rules.engine import Engine
    from schemas.events import InvalidEvent, decode_event
    from simulator import simulate
    from streams.embedded import run_events
    from warehouse import Sink, open_warehouse

    sim = simulate(cases, days, seed, start=datetime.fromisoformat(SIM_START).date(), violation_rate=0.2,
                   bad_rate=0.01)
    items: list[tuple[Any, bytes, datetime]] = []
    valid = []
    last_received = NOW - timedelta(days=days)
    for n, line in enumerate(sim.lines(), start=1):
        raw = line.strip()
        ev = decode_event(raw, position=n)
        if isinstance(ev, InvalidEvent):
            items.append((ev, raw, last_received))  # a broken line arrives with its neighbours
            continue
        received = (ev.recorded_at or ev.occurred_at) + timedelta(seconds=3)
        last_received = received
        items.append((ev, raw, received))
        valid.append(ev)

    engine = Engine.default()
    result = run_events(engine, valid)
    facts = [engine.facts(st) for st in result.states.values()]

    wh = open_warehouse(f"chdb://{directory}")
    try:
        wh.migrate()
        with Sink(wh, max_rows=20_000, max_seconds=0) as sink:
            sink.add_events(items)
            sink.add_facts(facts)
            sink.add_findings(result.findings)
            sink.add_notes(result.notes)

        # Alerting as it ran live, a week at a time, logging to JSON Lines (chDB takes ~25 ms per
        # small insert, and the dispatcher writes each attempt as it happens); the log is then copied
        # into the warehouse with the alerting module's own row mapping, as one insert per table.
        by_now = sorted((f for f in result.findings if f.fired_at <= NOW), key=lambda f: f.fired_at)
        log = JsonlDeliveryLog(directory.parent / f"{directory.name}-alerts", fsync=False)
        outbox = directory.parent / f"{directory.name}-outbox"
        senders: dict[str, Any] = {"email": OutboxChannel(str(outbox), "email"), "sms": _FlakySms()}
        dispatcher = Dispatcher(load_alerting_config(), log, senders, sleep=lambda _s: None)  # type: ignore[arg-type]
        for _week, group in itertools.groupby(by_now, key=lambda f: f.fired_at.astimezone(CHINA_TZ).isocalendar()[1]):
            batch = list(group)
            dispatcher.deliver(batch, min(NOW, batch[-1].fired_at + timedelta(minutes=5)))
        dispatcher.close()
        # Inspectors at work: a third of the red cards signed for, a fifth of the yellow ones closed.
        reds = [f for f in by_now if f.severity == "red"]
        yellows = [f for f in by_now if f.severity == "yellow"]
        for f in reds[::3]:
            acknowledge(log, f.finding_id, "jjjc-wang", NOW - timedelta(hours=1))
        for f in yellows[::5]:
            resolve(log, f.finding_id, "chief-li", "已督促窗口整改", NOW - timedelta(minutes=30))
        wh.insert("alert_deliveries", [delivery_row(a) for a in log.attempts()])
        versions = msgspec.json.Decoder(AlertState)
        wh.insert("alert_lifecycle", [lifecycle_row(versions.decode(line))
                                      for line in log.alerts_path.read_bytes().splitlines() if line.strip()])

        windows: dict[str, set[str]] = defaultdict(set)
        for f in facts:
            if f.department and f.window:
                windows[f.department].add(f.window)
        per_dept: dict[str, int] = defaultdict(int)
        for f in facts:
            if f.department:
                per_dept[f.department] += 1
        with_findings = sorted({f.case_id for f in by_now})
        today = NOW.date()

        def day(t: datetime | None) -> object:
            return t.astimezone(CHINA_TZ).date() if t is not None else None

        open_now = sum(1 for f in facts if f.accepted_at is not None and f.accepted_at <= NOW
                       and (f.completed_at is None or f.completed_at > NOW) and f.status not in ("rejected", "withdrawn"))
        return DemoInfo(
            now=NOW, start=NOW - timedelta(days=30), lines=len(items),
            invalid=sum(1 for it in items if isinstance(it[0], InvalidEvent)), cases=len(facts),
            findings=len(result.findings), findings_by_now=len(by_now), alerts=len(by_now),
            departments=sorted(windows), windows={d: sorted(w) for d, w in windows.items()},
            regions=sorted({f.region_code for f in facts if f.region_code}),
            busiest_department=max(per_dept, key=lambda d: per_dept[d]),
            case_with_findings=with_findings[0] if with_findings else "",
            open_now=open_now,
            accepted_today=sum(1 for f in facts if day(f.accepted_at) == today),
            completed_today=sum(1 for f in facts if day(f.completed_at) == today),
            red_today=sum(1 for f in result.findings if f.severity == "red" and day(f.fired_at) == today),
            yellow_today=sum(1 for f in result.findings if f.severity == "yellow" and day(f.fired_at) == today),
        )
    finally:
        wh.close()
