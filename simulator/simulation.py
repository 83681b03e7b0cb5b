"""The simulation run: arrivals, cases, injected violations, the event stream and its ground truth.

Cases are planned in arrival order, day by day, and their encoded events wait in per-day buckets
of recorded time; a day recorded before the current arrival day can no longer be added to, so it
is sorted and written out. That keeps memory bounded by the cases in flight and the output ordered by recorded
time, with the late arrivals and duplicates a real feed has.

Every case is judged by ``simulator.oracle`` (the rules as docs/rules.md words them) before it is
written: the truth of an injected case is what the oracle finds, and a normal case must find
nothing. The planner keeps normal cases clean by construction; the judgement is the guarantee that
an unforeseen catalog entry or threshold cannot make the truth silently wrong.

Three independent random streams (planning, recording delays, malformed lines) come from the one
seed, so ``--bad-rate`` changes which broken lines are added and nothing else.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

import msgspec

from rules.calendar import WorkCalendar
from rules.catalog import Catalog, load_catalog
from rules.config import RuleConfig, load_rule_config
from schemas.events import (
    CHINA_TZ,
    EVENT_TYPES,
    AnyEvent,
    Applicant,
    InvalidEvent,
    decode_event,
    encode_event,
)
from simulator import oracle
from simulator.timeline import AM_LEN, DAY, EPOCH_ORD, OFFICE_LEN, UTC8, DayTable, SimulationError, day_start
from simulator.traffic import Case, Center, ItemProfile, Knobs, PEvent, Planner, build_profiles
from simulator.violations import VIOLATIONS, Injection, Violation

REGION_CODES: tuple[tuple[str, str], ...] = (
    ("610113", "西安市雁塔区"), ("510182", "彭州市"), ("510117", "成都市郫都区"), ("320106", "南京市鼓楼区"),
    ("330106", "杭州市西湖区"), ("440305", "深圳市南山区"), ("420106", "武汉市武昌区"), ("370102", "济南市历下区"),
    ("110105", "北京市朝阳区"), ("500103", "重庆市渝中区"), ("430104", "长沙市岳麓区"), ("350203", "厦门市思明区"),
    ("410105", "郑州市金水区"), ("210102", "沈阳市和平区"), ("620102", "兰州市城关区"), ("530102", "昆明市五华区"),
    ("450103", "南宁市青秀区"), ("520102", "贵阳市南明区"), ("340104", "合肥市蜀山区"), ("360102", "南昌市东湖区"),
)
"""Real county-level codes (行政区划代码), one per simulated service center."""

DEFAULT_START = date(2026, 10, 1)
DUPLICATE_RATE = 0.004
_WEEKDAY_LOAD = (1.25, 1.1, 1.0, 1.0, 0.9, 0.8, 0.8)  # Monday is busiest; 调休 weekends are quiet


@dataclass
class Summary:
    """What a run produced, for the command's table and for callers."""

    cases: int = 0
    events: int = 0  # valid event lines, duplicates included
    duplicates: int = 0
    malformed: int = 0
    lines: int = 0
    injected_cases: int = 0
    injected_by_rule: Counter[str] = field(default_factory=Counter)  # cases, by the rule injected
    truth_by_rule: Counter[str] = field(default_factory=Counter)  # expected findings, by rule
    kinds: Counter[str] = field(default_factory=Counter)
    first_event: datetime | None = None
    last_event: datetime | None = None
    skipped_rules: list[str] = field(default_factory=list)  # rules no catalog item can show
    normal_cases_firing: int = 0  # planner could not keep a normal case clean (its findings are in the truth)
    missed_injections: int = 0  # an injection that did not make its rule fire (what it did is in the truth)


def _centers(count: int, profiles: list[ItemProfile]) -> list[Center]:
    windows: dict[str, str] = {}
    for p in profiles:
        windows.setdefault(p.window, p.wcode)
    sized = [(w, code, 4 + sum(map(ord, w)) % 6) for w, code in windows.items()]  # 4–9 officers a window
    out = []
    for i in range(count):
        if i < len(REGION_CODES):
            region = REGION_CODES[i][0]
        else:  # more centers than listed: neighbouring codes of the listed ones
            base = REGION_CODES[i % len(REGION_CODES)][0]
            region = f"{base[:4]}{(int(base[4:]) + 20 + i // len(REGION_CODES)) % 100:02d}"
        suffix = "" if count == 1 else (chr(ord("A") + i) if i < 26 else f"{i:02d}")
        out.append(Center(i, region, sized, suffix, 1.0 / (1.0 + 0.35 * i)))
    return out


class Simulation:
    """One deterministic run. Iterate ``lines()`` once; ``truth`` and ``summary`` are complete after."""

    def __init__(self, cases: int, days: int, seed: int, start: date = DEFAULT_START, *, centers: int = 1,
                 violation_rate: float = 0.05, bad_rate: float = 0.0, catalog: Catalog | None = None,
                 config: RuleConfig | None = None, calendar: WorkCalendar | None = None):
        if cases < 0 or days < 1 or centers < 1:
            raise SimulationError("--cases 不能为负，--days 与 --centers 至少为 1")
        if not 0 <= violation_rate <= 1 or not 0 <= bad_rate < 1:
            raise SimulationError("--violation-rate 应在 0–1 之间，--bad-rate 应在 0–1 之间（不含 1）")
        self.n_cases = cases
        self.days = days
        self.seed = seed
        self.start = start
        self.violation_rate = violation_rate
        self.bad_rate = bad_rate
        self.catalog = catalog or load_catalog()
        self.cfg = config or load_rule_config()
        self.calendar = calendar or WorkCalendar.default()
        self.tab = DayTable(self.calendar, start - timedelta(days=7), days + 60)
        self.profiles = build_profiles(self.catalog, self.cfg)
        self.centers = _centers(centers, self.profiles)
        self.truth: list[dict[str, Any]] = []
        self.summary = Summary()

    # -- planning --------------------------------------------------------------------------

    def _arrivals(self, rng: random.Random) -> list[tuple[int, list[tuple[int, int]]]]:
        """(date, [(office offset, center index)]) for every working day with arrivals, in order."""
        first = self.start.toordinal()
        days = self.tab.working_days_in(first, first + self.days - 1)
        if not days:
            raise SimulationError(f"{self.start.isoformat()} 起 {self.days} 天内没有工作日，无法生成办件")
        weights = [_WEEKDAY_LOAD[date.fromordinal(d).weekday()] * rng.uniform(0.85, 1.15) for d in days]
        chosen = Counter(rng.choices(range(len(days)), weights=weights, k=self.n_cases))
        cw = [c.weight for c in self.centers]
        out = []
        for i, d in enumerate(days):
            n = chosen.get(i, 0)
            if not n:
                continue
            offs = []
            for _ in range(n):
                # Two peaks a day: mid-morning and mid-afternoon.
                if rng.random() < 0.45:
                    off = int(rng.triangular(0, AM_LEN, AM_LEN * 0.45))
                else:
                    off = int(rng.triangular(AM_LEN, OFFICE_LEN, AM_LEN + (OFFICE_LEN - AM_LEN) * 0.4))
                offs.append(off)
            offs.sort()
            ctr = rng.choices(range(len(cw)), weights=cw, k=n) if len(cw) > 1 else [0] * n
            out.append((d, list(zip(offs, ctr, strict=True))))
        return out

    def _injections(self, rng: random.Random) -> tuple[dict[int, Violation], dict[str, list[ItemProfile]]]:
        usable: list[Violation] = []
        eligible: dict[str, list[ItemProfile]] = {}
        for v in VIOLATIONS:
            items = [p for p in self.profiles if v.eligible(p)]
            if items:
                usable.append(v)
                eligible[v.rule] = items
            else:
                self.summary.skipped_rules.append(v.rule)
        count = round(self.violation_rate * self.n_cases) if usable else 0
        plan = [usable[i % len(usable)] for i in range(count)]
        rng.shuffle(plan)
        picked = rng.sample(range(self.n_cases), count)
        return dict(zip(picked, plan, strict=True)), eligible

    # -- the stream ------------------------------------------------------------------------

    def lines(self) -> Iterator[bytes]:
        """The event stream as JSON Lines (each ending in a newline), malformed lines included.

        Each iteration starts afresh (same bytes, and ``truth``/``summary`` rebuilt), so a caller may
        run it twice without doubling the truth.
        """
        self.truth = []
        self.summary = Summary()
        for c in self.centers:
            c.serial.clear()
        rng = random.Random(self.seed)
        rec_rng = random.Random(f"recorded-{self.seed}")
        bad_rng = random.Random(f"malformed-{self.seed}")
        planner = Planner(rng, self.tab, self.cfg)
        arrivals = self._arrivals(rng)
        injections, eligible = self._injections(rng)
        horizon = day_start(arrivals[-1][0]) if arrivals else 0
        cum = list(accumulate(p.weight for p in self.profiles))
        eligible_cum = {rule: list(accumulate(p.weight for p in items)) for rule, items in eligible.items()}
        rnd = rng.random
        rec = rec_rng.random
        # Pending lines by China date of recording; a day is written once no case can add to it.
        buckets: dict[int, list[tuple[int, int, bytes]]] = {}
        seq = 0
        index = 0
        last_ts = 0
        first_ts: int | None = None
        injected: list[tuple[Case, dict[str, int]]] = []
        summ = self.summary
        line_no = 0
        make = EVENT_TYPES
        max_delay = max(0, self.cfg.backdate_tolerance_hours * 3600 - 60)  # normal records are never back-dated
        bad_rate = self.bad_rate
        bad = bad_rng.random

        def flush(before: int | None) -> Iterator[bytes]:
            """Lines recorded on China dates before ``before`` (all when None), in recorded order."""
            nonlocal line_no
            for d in sorted(d for d in buckets if before is None or d < before):
                items = buckets.pop(d)
                items.sort()
                for _, _, raw in items:
                    if bad_rate and bad() < bad_rate:
                        line_no += 1
                        summ.malformed += 1
                        self.truth.append({"line": line_no, "kind": "malformed"})
                        yield malformed_line(bad_rng, raw)
                    line_no += 1
                    yield raw

        for day, batch in arrivals:
            yield from flush(day)
            ymd = date.fromordinal(day).strftime("%Y%m%d")
            for off, ci in batch:
                center = self.centers[ci]
                cid = center.next_case_id(day, ymd)
                v = injections.get(index)
                index += 1
                # A case is judged by the oracle before it is written, and re-planned (a new draw) if a
                # normal one would fire or an injected one misses its rule; one that still does after
                # a few draws keeps what the oracle found, so the truth stays exact either way.
                for _attempt in range(4):
                    if v is None:
                        prof = self.profiles[bisect(cum, rnd() * cum[-1])]
                        case = planner.plan(cid, prof, center, day, off, Knobs())
                    else:
                        items = eligible[v.rule]
                        wc = eligible_cum[v.rule]
                        prof = items[bisect(wc, rnd() * wc[-1])]
                        case, kind = v.inject(Injection(planner, prof, center, cid, day, off, horizon))
                        case.kind, case.rule = kind, v.rule
                    # Recording delays: seconds to minutes; a few late arrivals of up to three hours.
                    for e in case.events:
                        if e.delay < 0:
                            r = rec()
                            d = (1 + int(r * 70) if r < 0.85 else 60 + int((r - 0.85) * 7000) if r < 0.97
                                 else 1800 + int((r - 0.97) * 300000))
                            e.delay = d if d <= max_delay else max_delay
                    found = oracle.expected(case.events, prof.item, self.cfg, self.tab)
                    if (case.rule in found) if v is not None else not found:
                        break
                if v is not None:
                    injected.append((case, found))
                    if case.rule not in found:
                        summ.missed_injections += 1
                elif found:
                    case.kind = "none"
                    injected.append((case, found))
                    summ.normal_cases_firing += 1
                summ.cases += 1
                cid = case.cid
                for n, e in enumerate(case.events, start=1):
                    raw = _encode(make, cid, n, e)
                    at = e.ts + e.delay
                    seq += 1
                    item = (at, seq, raw)
                    d = (at + UTC8) // DAY + EPOCH_ORD
                    bucket = buckets.get(d)
                    if bucket is None:
                        buckets[d] = [item]
                    else:
                        bucket.append(item)
                    if rec() < DUPLICATE_RATE:
                        seq += 1
                        at += 30 + int(rec() * 7200)
                        buckets.setdefault((at + UTC8) // DAY + EPOCH_ORD, []).append((at, seq, raw))
                        summ.duplicates += 1
                summ.events += len(case.events)
                if case.events[-1].ts > last_ts:
                    last_ts = case.events[-1].ts
                if first_ts is None or case.events[0].ts < first_ts:
                    first_ts = case.events[0].ts
        yield from flush(None)
        summ.events += summ.duplicates
        summ.lines = line_no

        # Ground truth: every finding the injected cases should raise by the last event time
        # (the default --until of `esup run`).
        rows = []
        for case, found in injected:
            if case.rule is not None:
                summ.injected_cases += 1
                summ.injected_by_rule[case.rule] += 1
                summ.kinds[case.kind or ""] += 1
            for rule, at in found.items():
                if at <= last_ts:
                    rows.append({"case_id": case.cid, "rule": rule, "injected": case.kind})
                    summ.truth_by_rule[rule] += 1
        rows.sort(key=lambda r: (r["case_id"], r["rule"]))
        self.truth[:0] = rows
        if first_ts is not None:
            summ.first_event = datetime.fromtimestamp(first_ts, CHINA_TZ)
            summ.last_event = datetime.fromtimestamp(last_ts, CHINA_TZ)

    def events(self) -> Iterator[AnyEvent]:
        """The valid events, decoded, in file order: for drivers that run the engine in-process."""
        for raw in self.lines():
            ev = decode_event(raw)
            if not isinstance(ev, InvalidEvent):
                yield ev


_from_ts = datetime.fromtimestamp


def _encode(make: dict, cid: str, n: int, e: PEvent) -> bytes:
    """One event line, through the contract's own structs and encoder."""
    f = e.f
    t = e.type
    if t == "submitted":
        f = dict(f)
        name, idn, phone = f["applicant"]
        f["applicant"] = Applicant(name=name, id_number=idn, phone=phone)
    elif t == "accepted" and "due_at" in f:
        f = dict(f)
        f["due_at"] = _from_ts(f["due_at"], CHINA_TZ)
    ev = make[t](event_id=f"{cid}-{n:02d}", case_id=cid, occurred_at=_from_ts(e.ts, CHINA_TZ), source=e.src,
                 recorded_at=_from_ts(e.ts + e.delay, CHINA_TZ), officer_id=e.officer, **f)
    return encode_event(ev) + b"\n"


# ------------------------------------------------------------------------------- malformed lines

_loose = msgspec.json.Decoder()
_plain = msgspec.json.Encoder()


def malformed_line(rng: random.Random, raw: bytes) -> bytes:
    """A broken copy of a real line, as a vendor system sometimes sends: each kind fails the contract."""
    kind = rng.randrange(8)
    body = raw.rstrip(b"\n")
    if kind == 0:  # cut off mid-line
        return body[: rng.randint(10, max(11, len(body) - 5))] + b"\n"
    if kind == 1:
        return b"<html><body>502 Bad Gateway</body></html>\n"
    doc = _loose.decode(body)
    doc["event_id"] = f"{doc['event_id']}-BAD"
    if kind == 2:
        del doc["case_id"]
    elif kind == 3:
        doc["occurred_at"] = int(rng.randint(1_700_000_000, 1_800_000_000))
    elif kind == 4:
        doc["event_type"] = "case_archived"
    elif kind == 5:
        doc["schema_version"] = 2
    elif kind == 6:
        doc["event_id"] = ""
    else:
        doc["recorded_at"] = "昨天下午"
    return _plain.encode(doc) + b"\n"


# ------------------------------------------------------------------------------- the public API


def simulate(cases: int, days: int, seed: int, start: date = DEFAULT_START, *, centers: int = 1,
             violation_rate: float = 0.05, bad_rate: float = 0.0, catalog: Catalog | str | Path | None = None,
             config: RuleConfig | str | Path | None = None, calendar: WorkCalendar | None = None) -> Simulation:
    """Plan a run; iterate ``.lines()`` for the JSON Lines, then read ``.truth`` and ``.summary``."""
    if catalog is not None and not isinstance(catalog, Catalog):
        catalog = load_catalog(catalog)
    if config is not None and not isinstance(config, RuleConfig):
        config = load_rule_config(config)
    return Simulation(cases, days, seed, start, centers=centers, violation_rate=violation_rate,
                      bad_rate=bad_rate, catalog=catalog, config=config, calendar=calendar)


def write(out: str | Path, truth: str | Path | None = None, *, cases: int, days: int, seed: int,
          start: date = DEFAULT_START, **options: Any) -> Summary:
    """Write the events (JSON Lines) and, if asked, the ground truth; returns the run's summary."""
    sim = simulate(cases, days, seed, start, **options)
    with open(out, "wb") as fh:
        chunk: list[bytes] = []
        for line in sim.lines():
            chunk.append(line)
            if len(chunk) >= 8192:
                fh.write(b"".join(chunk))
                chunk.clear()
        fh.write(b"".join(chunk))
    if truth is not None:
        with open(truth, "wb") as fh:
            fh.write(b"".join(_plain.encode(row) + b"\n" for row in sim.truth))
    return sim.summary
