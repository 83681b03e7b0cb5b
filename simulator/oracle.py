"""What docs/rules.md says one case should fire: the simulator's own reading of the rules.

The truth file must list every consequence of an injected violation, not only the one intended
(a completion left past the statutory limit also passes the promised warning and the promised
limit). Rather than hand-listing consequences per injection, each injected case is judged here,
from the rule text, independently of ``rules/``; the engine is then compared with it.

Clock rules are judged as the text defines them — "fires once now ≥ X if no satisfying event
occurred at or before X" — with X recomputed as events become known. Only pauses and extensions move
a deadline that is already known; every other event adds deadlines (an acceptance, even a late one
under 第32条 that puts the clock start in the past) or satisfies them. So the deadlines are judged
just before each moving event, against the next event's instant, and once more with every event
known, against an unbounded clock: a deadline that never moves fires exactly when nothing at or
before it satisfied it, which the final judgement sees.

``expected`` returns each rule with the instant it fires, as if the clock ran forever; the caller
keeps those at or before the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from rules.catalog import Item
from rules.config import RuleConfig
from simulator.timeline import DayTable, china_ord, day_end, day_start, second_of_day
from simulator.traffic import PEvent, warning_day

TERMINAL = ("completed", "withdrawn", "intake_rejected")
MOVES_DEADLINES = frozenset(("supplement_requested", "supplement_received", "suspended", "resumed",
                             "extension_granted"))
"""Events after which a deadline already known can move; every other event only adds or satisfies one."""
INTAKE_DONE = ("accepted", "intake_rejected", "supplement_requested", "withdrawn", "completed")


def _hhmm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def expected(events: Sequence[PEvent], item: Item | None, cfg: RuleConfig, tab: DayTable) -> dict[str, int]:
    """rule -> the earliest instant (epoch seconds) it fires for this case, if the clock never stopped."""
    evs = sorted(events, key=lambda e: e.ts)
    out: dict[str, int] = {}

    def hit(rule: str, at: int) -> None:
        if rule not in out or at < out[rule]:
            out[rule] = at

    _event_rules(evs, item, cfg, tab, hit)
    n = len(evs)
    for i in range(n):
        nxt = evs[i + 1] if i + 1 < n else None
        if nxt is not None and nxt.type not in MOVES_DEADLINES:
            continue
        for rule, at, satisfied in _clock_rules(evs[: i + 1], item, cfg, tab):
            if (nxt is None or at < nxt.ts) and not satisfied:
                hit(rule, at)
    return out


# ------------------------------------------------------------------------------- event rules


def _event_rules(evs: list[PEvent], item: Item | None, cfg: RuleConfig, tab: DayTable,
                 hit: Callable[[str, int], None]) -> None:
    steps = item.steps if item is not None else ()
    order = {s: i for i, s in enumerate(steps)}
    first_step: dict[str, PEvent] = {}
    first: dict[str, int] = {}
    for e in evs:
        first.setdefault(e.type, e.ts)
    completed = first.get("completed")
    accepted = first.get("accepted")
    night_from, night_to = _hhmm(cfg.off_hours_start), _hhmm(cfg.off_hours_end)
    tolerance = cfg.backdate_tolerance_hours * 3600
    assessed_codes: set[str] = set()
    supplements = 0
    fees = Decimal(0)  # paid + waived − assessed, up to the completion
    for e in evs:
        t = e.type
        ts = e.ts
        if e.delay > tolerance:
            hit("PROCEDURE.BACKDATED", ts)
        after = completed is not None and ts > completed
        if t == "step_completed":
            s = e.f["step"]
            if s in order and s not in first_step:
                first_step[s] = e
                if any(x in first_step and first_step[x].ts < ts for x in steps[order[s] + 1:]):
                    hit("PROCEDURE.OUT_OF_ORDER", ts)
                for a, b in item.separate_officers:  # type: ignore[union-attr]
                    if s in (a, b):
                        other = first_step.get(b if s == a else a)
                        if other is not None and other is not e and e.officer and other.officer == e.officer:
                            hit("PROCEDURE.SAME_OFFICER", ts)
            if s in cfg.off_hours_steps:
                _off_hours(ts, night_from, night_to, tab, hit)
            if after:
                hit("PROCEDURE.AFTER_COMPLETION", ts)
        elif t == "decided":
            _off_hours(ts, night_from, night_to, tab, hit)
            if after:
                hit("PROCEDURE.AFTER_COMPLETION", ts)
        elif t.startswith("fee_") and t != "fee_refunded":
            if after:
                hit("PROCEDURE.AFTER_COMPLETION", ts)
            if item is None:
                continue
            code = e.f["fee_code"]
            amount = e.f["amount"]
            if t != "fee_waived":
                fee = item.fee(code)
                if fee is None:
                    hit("FEE.NO_BASIS", ts)
                elif amount > fee.amount:
                    hit("FEE.OVER_STANDARD", ts)
            if t == "fee_assessed":
                if code in assessed_codes:
                    hit("FEE.DUPLICATE", ts)
                assessed_codes.add(code)
            elif t == "fee_paid" and e.f["channel"] == "window_cash":
                hit("FEE.CASH_AT_WINDOW", ts)
            elif t == "fee_waived" and not e.f.get("approval_ref"):
                hit("FEE.WAIVER_UNAPPROVED", ts)
            if completed is not None and ts <= completed:
                fees += -amount if t == "fee_assessed" else amount
        elif t == "supplement_requested":
            supplements += 1
            if supplements == 2:
                hit("PROCEDURE.REPEATED_SUPPLEMENT", ts)
        elif t == "rated" and e.f["level"] <= cfg.bad_rating_max_level:
            hit("QUALITY.BAD_RATING", ts)

    close = min((first[t] for t in ("decided", "completed") if t in first), default=None)
    if close is not None:
        if any(s not in first_step or first_step[s].ts >= close for s in steps):
            hit("PROCEDURE.SKIPPED_STEP", close)
        if accepted is None or accepted >= close:
            hit("PROCEDURE.NOT_ACCEPTED", close)
    if completed is not None and item is not None:
        if accepted is not None and item.min_minutes is not None and (completed - accepted) / 60 < item.min_minutes:
            hit("PROCEDURE.TOO_FAST", completed)
        if fees != 0:
            hit("FEE.AMOUNT_MISMATCH", completed)
    delivered = first.get("delivered")
    if delivered is not None and item is not None and "fee_assessed" in first:
        due = {e.f["fee_code"] for e in evs if e.type == "fee_assessed" and e.ts < delivered}
        settled = {e.f["fee_code"] for e in evs if e.type in ("fee_paid", "fee_waived") and e.ts < delivered}
        if due - settled:
            hit("FEE.DELIVERED_UNPAID", delivered)


def _off_hours(ts: int, night_from: int, night_to: int, tab: DayTable, hit: Callable[[str, int], None]) -> None:
    minute = second_of_day(ts) // 60
    if minute >= night_from or minute < night_to or not tab.is_working(china_ord(ts)):
        hit("PROCEDURE.OFF_HOURS", ts)


# ------------------------------------------------------------------------------- clock rules


def _clock_rules(evs: list[PEvent], item: Item | None, cfg: RuleConfig,
                 tab: DayTable) -> list[tuple[str, int, bool]]:
    """(rule, deadline X, satisfied at or before X) for every deadline known from ``evs``."""
    out: list[tuple[str, int, bool]] = []
    first: dict[str, PEvent] = {}
    for e in evs:
        first.setdefault(e.type, e)
    term = min((first[t].ts for t in TERMINAL if t in first), default=None)

    def by(x: int, *times: int | None) -> bool:
        for t in times:
            if t is not None and t <= x:
                return True
        return False

    sub = first.get("submitted")
    if sub is not None:
        x = day_end(tab.nth_after(china_ord(sub.ts), cfg.intake_days))
        out.append(("TIMEOUT.INTAKE_OVERDUE", x,
                    by(x, *(first[t].ts for t in INTAKE_DONE if t in first))))

    # Pauses: (D(t0), D(t1)] for each ended one; an open one hides every date after D(t0).
    paused: list[tuple[int, int]] = []
    open_from: int | None = None
    suspensions: list[tuple[PEvent, int | None]] = []
    supp_open: PEvent | None = None
    susp_open: PEvent | None = None
    for e in evs:
        if e.type == "supplement_requested" and supp_open is None:
            supp_open = e
        elif e.type == "supplement_received" and supp_open is not None:
            paused.append((china_ord(supp_open.ts), china_ord(e.ts)))
            supp_open = None
        elif e.type == "suspended" and susp_open is None:
            susp_open = e
        elif e.type == "resumed" and susp_open is not None:
            paused.append((china_ord(susp_open.ts), china_ord(e.ts)))
            suspensions.append((susp_open, e.ts))
            susp_open = None
    for p in (supp_open, susp_open):
        if p is not None:
            d0 = china_ord(p.ts)
            open_from = d0 if open_from is None else min(open_from, d0)
    if susp_open is not None:
        suspensions.append((susp_open, None))

    def nth(day: int, n: int) -> int | None:
        return tab.nth_after_paused(day, n, paused, open_from)

    acc = first.get("accepted")
    if acc is not None:
        acc_day = china_ord(acc.ts)
        start_day, start_t = acc_day, acc.ts
        if sub is not None and acc_day > tab.nth_after(china_ord(sub.ts), cfg.intake_days):
            start_day, start_t = china_ord(sub.ts), sub.ts
        ext_ev = first.get("extension_granted")
        ext = ext_ev.f["days"] if ext_ev is not None else 0
        decided = first.get("decided")

        if item is not None and item.kind == "promised":
            due = acc.f.get("due_at")
            if due is not None:
                due_day = china_ord(due - 1)
                n = tab.working_days_between(start_day, due_day)
                offset = due - day_end(due_day)
            else:
                n, offset = item.promised_days, 0
            n += ext
            if n >= 1:
                od = nth(start_day, n)
                if od is not None:
                    x = day_end(od) + offset
                    out.append(("TIMEOUT.PROMISED_OVERDUE", x, by(x, term)))
                wd = nth(start_day, warning_day(n, cfg))
                if wd is not None:
                    x = day_start(wd)
                    out.append(("TIMEOUT.PROMISED_WARNING", x, by(x, term)))

        m = (item.statutory_days if item is not None else cfg.default_statutory_days) + ext
        sd = nth(start_day, m)
        if sd is not None:
            x = day_end(sd)
            out.append(("TIMEOUT.STATUTORY_OVERDUE", x, by(x, term, decided.ts if decided else None)))

        if item is not None and item.step_limits:
            done: dict[str, int] = {}
            for e in evs:
                if e.type == "step_completed":
                    done.setdefault(e.f["step"], e.ts)
            prev = start_t
            for i, step in enumerate(item.steps):
                if i > 0:
                    prev = max(done[s] for s in item.steps[:i])
                limit = item.step_limits.get(step)
                if limit is not None:
                    day = nth(china_ord(prev), limit)
                    if day is not None:
                        x = day_end(day)
                        out.append(("TIMEOUT.STEP_OVERDUE", x, by(x, done.get(step), term)))
                if step not in done:
                    break

        if item is not None and item.kind == "on_the_spot":
            x = day_end(acc_day)
            out.append(("PROCEDURE.ON_THE_SPOT_LATE", x, by(x, term)))

    for ev, resumed in suspensions:
        planned = ev.f.get("planned_days")
        if planned:
            x = day_end(tab.nth_after(china_ord(ev.ts), planned))
            out.append(("TIMEOUT.SUSPENSION_OVERRUN", x, by(x, resumed, term)))

    if item is not None and "fee_paid" in first:
        paid = sum((e.f["amount"] for e in evs if e.type == "fee_paid"), Decimal(0))
        decided = first.get("decided")
        ends = [first[t].ts for t in ("intake_rejected", "withdrawn") if t in first]
        if decided is not None and decided.f["outcome"] == "denied":
            ends.append(decided.ts)
        if paid > 0 and ends:
            x = day_end(tab.nth_after(china_ord(min(ends)), cfg.refund_days))
            refunded = Decimal(0)
            for e in evs:
                if e.type == "fee_refunded" and e.ts <= x:
                    amount = e.f.get("amount")
                    refunded += amount if amount is not None else paid - refunded
            out.append(("FEE.NOT_REFUNDED", x, paid - refunded <= 0))

    for e in evs if "rated" in first or "complaint_filed" in first else ():
        if e.type == "rated" and e.f["level"] <= cfg.bad_rating_max_level:
            x = day_end(tab.nth_after(china_ord(e.ts), cfg.bad_rating_days))
            fixed = any(r.type == "rating_resolved" and e.ts <= r.ts <= x for r in evs)
            out.append(("QUALITY.BAD_RATING_UNRESOLVED", x, fixed))
        elif e.type == "complaint_filed":
            x = day_end(tab.nth_after(china_ord(e.ts), cfg.complaint_days))
            cid = e.f.get("complaint_id")
            fixed = any(r.type == "complaint_resolved" and e.ts <= r.ts <= x
                        and (cid is None or r.f.get("complaint_id") in (None, cid)) for r in evs)
            out.append(("QUALITY.COMPLAINT_OVERDUE", x, fixed))
    return out
