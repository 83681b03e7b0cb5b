"""Injected violations (注入违规): one small function per rule code of docs/rules.md.

Each function plans one case that breaks exactly one thing and returns the case with the name of
the kind it injected. It starts from a *plain* normal lifecycle (no random supplement, suspension,
extension, complaint …), so that the one deviation is all there is; the consequences it has on
other rules (a completion past the statutory limit is also past the promised one) are not listed
here but judged by ``simulator.oracle`` from the rule text.

Clock violations are made to show themselves inside the run: either the late satisfying event is
itself recorded (a completion, a resumption, a refund after the deadline), or the case is left open
only when it arrived early enough for the deadline to pass before the last event of the run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from rules.config import RuleConfig
from simulator.timeline import DayTable, china_ord, day_end, day_start, second_of_day
from simulator.traffic import SPECIAL_PROCEDURES, Case, Center, FeeLine, ItemProfile, Knobs, PEvent, Planner


@dataclass(slots=True)
class Injection:
    """What an injection needs to plan its case."""

    planner: Planner
    prof: ItemProfile
    center: Center
    cid: str
    arrival: int  # date ordinal of the submission
    arrival_off: int  # office offset of the submission
    horizon: int  # an instant the run is sure to reach (start of the last arrival day)

    @property
    def rng(self) -> random.Random:
        return self.planner.rng

    @property
    def tab(self) -> DayTable:
        return self.planner.tab

    @property
    def cfg(self) -> RuleConfig:
        return self.planner.cfg

    def plan(self, **knobs: object) -> Case:
        return self.planner.plan(self.cid, self.prof, self.center, self.arrival, self.arrival_off,
                                 Knobs(plain=True, **knobs))  # type: ignore[arg-type]

    def reaches(self, working_days: int) -> bool:
        """Is a deadline ``working_days`` after the arrival sure to pass before the run ends?"""
        return day_end(self.tab.nth_after(self.arrival, working_days)) <= self.horizon


def _find(case: Case, typ: str, step: str | None = None) -> PEvent | None:
    for e in case.events:
        if e.type == typ and (step is None or e.f.get("step") == step):
            return e
    return None


def _resort(case: Case) -> None:
    case.events.sort(key=lambda e: e.ts)


def _one_fee(inj: Injection, **kw: object) -> list[FeeLine]:
    fee = inj.rng.choice(inj.prof.fees)
    line = FeeLine(fee.code, fee.amount, inj.rng.choice(("bank", "online")))
    for k, v in kw.items():
        setattr(line, k, v)
    return [line]


# ------------------------------------------------------------------------------------ timeouts


def intake_overdue(inj: Injection) -> tuple[Case, str]:
    """Intake decided after the 5-working-day limit (第32条): rejected late, or accepted late."""
    late = inj.cfg.intake_days + inj.rng.randint(1, 3)
    if not inj.prof.spot and inj.prof.k - 1 >= late + 1 and inj.rng.random() < 0.5:
        return inj.plan(intake_gap=late, late_intake=True, due_at=False), "accepted_after_intake_limit"
    return inj.plan(outcome="rejected", intake_gap=late), "rejected_after_intake_limit"


def promised_warning(inj: Injection) -> tuple[Case, str]:
    """Completed on the warning day itself: after the yellow-card instant, before the promised limit."""
    return inj.plan(intake_gap=0, completion_idx=inj.prof.k), "completed_on_warning_day"


def promised_overdue(inj: Injection) -> tuple[Case, str]:
    """Completed a few working days past the promised limit, still within the statutory one."""
    p = inj.prof
    day = inj.rng.randint(p.n + 1, min(p.m, p.n + 3))
    return inj.plan(intake_gap=0, completion_idx=day), "completed_after_promised_limit"


def statutory_overdue(inj: Injection) -> tuple[Case, str]:
    """Left open after its steps past the statutory limit, or decided only after it."""
    p = inj.prof
    if inj.reaches(p.m + 1) and inj.rng.random() < 0.6:
        return inj.plan(intake_gap=0, outcome="open"), "left_open_past_statutory_limit"
    return inj.plan(intake_gap=0, completion_idx=p.m + inj.rng.randint(1, 3)), "decided_after_statutory_limit"


def _late_steps(p: ItemProfile) -> list[int]:
    """Steps (after the first) that can be one day late while the case still ends before the warning."""
    return [i for i in range(1, len(p.steps)) if p.limits[i] is not None and p.limits[i] + 2 <= p.k]


def step_overdue(inj: Injection) -> tuple[Case, str]:
    """One step completed the working day after its step limit; every other step on time."""
    p = inj.prof
    j = inj.rng.choice(_late_steps(p))
    moves = [0] * len(p.steps)
    moves[j - 1] = p.limits[j] + 1  # type: ignore[operator]
    return inj.plan(intake_gap=0, step_moves=moves), "step_completed_after_limit"


def suspension_overrun(inj: Injection) -> tuple[Case, str]:
    """A special procedure resumed one or two working days after its planned length."""
    proc, planned = SPECIAL_PROCEDURES[inj.rng.randrange(len(SPECIAL_PROCEDURES))]
    actual = planned + inj.rng.randint(1, 2)
    return inj.plan(intake_gap=0, suspension=(proc, planned, actual)), "resumed_after_planned_days"


# ------------------------------------------------------------------------------------ fees


def fee_no_basis(inj: Injection) -> tuple[Case, str]:
    """A fee whose code is not in the item's schedule (an item with no fees: any fee)."""
    code, n = "ZLF-01", 1
    while inj.prof.item.fee(code) is not None:  # 资料费: not in any schedule we ship, but make sure
        n += 1
        code = f"ZLF-{n:02d}"
    lines = [FeeLine(code, Decimal(inj.rng.choice((10, 20, 30, 50, 100))), "bank")]
    return inj.plan(fees=lines), "fee_without_basis"


def fee_over_standard(inj: Injection) -> tuple[Case, str]:
    """Assessed and paid above the standard amount."""
    line = _one_fee(inj)[0]
    line.assessed = max(line.assessed + 1, (line.assessed * Decimal("1.5")).quantize(Decimal(1)))
    return inj.plan(fees=[line]), "fee_over_standard"


def fee_cash_at_window(inj: Injection) -> tuple[Case, str]:
    """Paid in cash at the window instead of the bank (票款分离)."""
    return inj.plan(fees=_one_fee(inj, settle="window_cash")), "cash_taken_at_window"


def fee_duplicate(inj: Injection) -> tuple[Case, str]:
    """The same fee assessed (and paid) twice."""
    return inj.plan(fees=_one_fee(inj, twice=True)), "fee_assessed_twice"


def fee_amount_mismatch(inj: Injection) -> tuple[Case, str]:
    """Half the assessed amount paid, and the case completed anyway."""
    line = _one_fee(inj)[0]
    line.paid = (line.assessed / 2).quantize(Decimal("0.01"))
    return inj.plan(fees=[line]), "paid_less_than_assessed"


def fee_not_refunded(inj: Injection) -> tuple[Case, str]:
    """A fee paid up front, the application denied, and no refund within the refund limit."""
    lines = _one_fee(inj)
    if inj.reaches(inj.prof.k + inj.cfg.refund_days + 1) and inj.rng.random() < 0.5:
        return inj.plan(outcome="denied", fees=lines, fee_mode="pre", refund="none"), "denied_fee_never_refunded"
    return inj.plan(outcome="denied", fees=lines, fee_mode="pre", refund="late"), "denied_fee_refunded_late"


def fee_delivered_unpaid(inj: Injection) -> tuple[Case, str]:
    """The certificate handed over before the fee was paid (paid later, before completion)."""
    return inj.plan(fees=_one_fee(inj), fee_mode="post", deliver_before_pay=True), "delivered_before_payment"


def fee_waiver_unapproved(inj: Injection) -> tuple[Case, str]:
    """A fee waived with no approval reference."""
    return inj.plan(fees=_one_fee(inj, settle="waive", approval=None)), "waiver_without_approval"


# ------------------------------------------------------------------------------------ procedure


def skipped_step(inj: Injection) -> tuple[Case, str]:
    """One required step never recorded (preferably one without a step limit)."""
    case = inj.plan()
    p = inj.prof
    free = [i for i in range(1, len(p.steps)) if p.limits[i] is None] or list(range(1, len(p.steps)))
    ev = _find(case, "step_completed", p.steps[inj.rng.choice(free)])
    assert ev is not None
    case.events.remove(ev)
    return case, "step_skipped"


def out_of_order(inj: Injection) -> tuple[Case, str]:
    """Two consecutive steps recorded in the wrong order (their times swapped)."""
    case = inj.plan()
    p = inj.prof
    i = inj.rng.randrange(1, len(p.steps) - 1) if len(p.steps) >= 3 else 0
    a = _find(case, "step_completed", p.steps[i])
    b = _find(case, "step_completed", p.steps[i + 1])
    assert a is not None and b is not None
    a.ts, b.ts = b.ts, a.ts
    _resort(case)
    return case, "steps_swapped"


def same_officer(inj: Injection) -> tuple[Case, str]:
    """Both steps of a 审批分离 pair completed by the same officer."""
    case = inj.plan()
    p = inj.prof
    ia, ib = inj.rng.choice(p.pairs)
    a = _find(case, "step_completed", p.steps[ia])
    b = _find(case, "step_completed", p.steps[ib])
    assert a is not None and b is not None
    b.officer = a.officer
    pool = inj.center.officers[p.window]
    for x, y in p.pairs:  # keep every other pair separated
        if (x, y) == (ia, ib):
            continue
        ex = _find(case, "step_completed", p.steps[x])
        ey = _find(case, "step_completed", p.steps[y])
        if ex is not None and ey is not None and ex.officer == ey.officer:
            moved = ey if y not in (ia, ib) else ex
            moved.officer = next(o for o in pool if o not in (ex.officer, a.officer))
    return case, "same_officer_on_separated_steps"


def not_accepted(inj: Injection) -> tuple[Case, str]:
    """Processed and completed with no acceptance (受理) record."""
    return inj.plan(accept=False), "completed_without_acceptance"


def repeated_supplement(inj: Injection) -> tuple[Case, str]:
    """A second supplement request (一次性告知 broken)."""
    return inj.plan(intake_gap=0, supplements=2), "second_supplement_request"


def on_the_spot_late(inj: Injection) -> tuple[Case, str]:
    """An on-the-spot item (即办件) completed on the next working day."""
    return inj.plan(completion_idx=1), "on_the_spot_completed_next_day"


def too_fast(inj: Injection) -> tuple[Case, str]:
    """Accepted and completed in well under the item's plausible minimum."""
    case = inj.plan(intake_gap=0, completion_idx=0)
    acc = _find(case, "accepted")
    comp = _find(case, "completed")
    assert acc is not None and comp is not None
    limit = inj.prof.min_minutes * 60
    span = inj.rng.randint(max(60, limit // 5), limit - 60)
    old = comp.ts - acc.ts
    inside = [e for e in case.events if acc.ts < e.ts <= comp.ts]
    for e in inside:  # squeeze everything between acceptance and completion proportionally
        e.ts = acc.ts + (e.ts - acc.ts) * span // old
    for x, y in zip(inside, inside[1:], strict=False):
        if y.ts <= x.ts:
            y.ts = x.ts + 1
    _resort(case)
    return case, "completed_too_fast"


def off_hours(inj: Injection) -> tuple[Case, str]:
    """The decision recorded at night (20:00 and later)."""
    start = inj.cfg.off_hours_start.split(":")
    first = int(start[0]) * 60 + int(start[1]) + 5
    last = max(first, min(first + 120, 23 * 60 + 30))  # completion follows within ten minutes, same day
    sod = inj.rng.randint(first, last) * 60 + inj.rng.randint(0, 59)
    return inj.plan(night_decision=sod, fee_mode="pre"), "decided_at_night"


def after_completion(inj: Injection) -> tuple[Case, str]:
    """The last step recorded again by its officer after the case was completed."""
    case = inj.plan()
    p = inj.prof
    comp = _find(case, "completed")
    assert comp is not None
    if second_of_day(comp.ts) < 16 * 3600 + 30 * 60:
        ts = comp.ts + inj.rng.randint(30 * 60, 90 * 60)
    else:
        ts = day_start(inj.tab.nth_after(china_ord(comp.ts), 1)) + 9 * 3600 + inj.rng.randint(0, 7200)
    if p.steps:
        last = _find(case, "step_completed", p.steps[-1])
        assert last is not None
        case.events.append(PEvent(ts, "step_completed", last.officer, last.src, {"step": p.steps[-1]}))
    else:
        dec = _find(case, "decided")
        assert dec is not None
        case.events.append(PEvent(ts, "decided", dec.officer, dec.src, dict(dec.f)))
    _resort(case)
    return case, "step_recorded_after_completion"


def backdated(inj: Injection) -> tuple[Case, str]:
    """An event entered into the system days after it happened (补录)."""
    case = inj.plan(rating=inj.rng.randint(4, 5))
    r = inj.rng.random()
    middle = [e for e in case.events if e.type == "step_completed"][1:]
    if r < 0.25 and middle:
        ev = inj.rng.choice(middle)
    else:
        ev = _find(case, "delivered") if r < 0.5 else None
        ev = ev or _find(case, "rated")
    assert ev is not None
    ev.delay = inj.cfg.backdate_tolerance_hours * 3600 + inj.rng.randint(3600, 5 * 86400)
    return case, "recorded_days_late"


# ------------------------------------------------------------------------------------ quality


def bad_rating(inj: Injection) -> tuple[Case, str]:
    """A bad rating, followed up and put right in time."""
    level = inj.rng.randint(1, inj.cfg.bad_rating_max_level)
    fix = inj.rng.randint(1, inj.cfg.bad_rating_days - 1)
    return inj.plan(rating=level, rating_fix=fix), "bad_rating_followed_up"


def bad_rating_unresolved(inj: Injection) -> tuple[Case, str]:
    """A bad rating never put right, or put right only after the limit."""
    level = inj.rng.randint(1, inj.cfg.bad_rating_max_level)
    days = inj.cfg.bad_rating_days
    if inj.reaches(inj.prof.k + days + 4) and inj.rng.random() < 0.5:
        return inj.plan(rating=level, rating_fix=-1), "bad_rating_never_resolved"
    return inj.plan(rating=level, rating_fix=days + inj.rng.randint(1, 3)), "bad_rating_resolved_late"


def complaint_overdue(inj: Injection) -> tuple[Case, str]:
    """A complaint never resolved, or resolved after its limit."""
    days = inj.cfg.complaint_days
    if inj.reaches(inj.prof.k + days + 7) and inj.rng.random() < 0.5:
        return inj.plan(complaint=-1), "complaint_never_resolved"
    return inj.plan(complaint=days + inj.rng.randint(1, 3)), "complaint_resolved_late"


# ------------------------------------------------------------------------------------ registry


def _any(p: ItemProfile) -> bool:
    return True


def _promised(p: ItemProfile) -> bool:
    return not p.spot


def _fees(p: ItemProfile) -> bool:
    return bool(p.fees)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    inject: Callable[[Injection], tuple[Case, str]]
    eligible: Callable[[ItemProfile], bool]


VIOLATIONS: tuple[Violation, ...] = (
    Violation("TIMEOUT.INTAKE_OVERDUE", intake_overdue, _any),
    Violation("TIMEOUT.PROMISED_WARNING", promised_warning, _promised),
    Violation("TIMEOUT.PROMISED_OVERDUE", promised_overdue, lambda p: not p.spot and p.m > p.n),
    Violation("TIMEOUT.STATUTORY_OVERDUE", statutory_overdue, _promised),
    Violation("TIMEOUT.STEP_OVERDUE", step_overdue, lambda p: not p.spot and bool(_late_steps(p))),
    Violation("TIMEOUT.SUSPENSION_OVERRUN", suspension_overrun, lambda p: not p.spot and len(p.steps) >= 2),
    Violation("FEE.NO_BASIS", fee_no_basis, _any),
    Violation("FEE.OVER_STANDARD", fee_over_standard, _fees),
    Violation("FEE.CASH_AT_WINDOW", fee_cash_at_window, _fees),
    Violation("FEE.DUPLICATE", fee_duplicate, _fees),
    Violation("FEE.AMOUNT_MISMATCH", fee_amount_mismatch, _fees),
    Violation("FEE.NOT_REFUNDED", fee_not_refunded, lambda p: not p.spot and bool(p.fees)),
    Violation("FEE.DELIVERED_UNPAID", fee_delivered_unpaid, _fees),
    Violation("FEE.WAIVER_UNAPPROVED", fee_waiver_unapproved, _fees),
    Violation("PROCEDURE.SKIPPED_STEP", skipped_step, lambda p: len(p.steps) >= 2),
    Violation("PROCEDURE.OUT_OF_ORDER", out_of_order, lambda p: len(p.steps) >= 2),
    Violation("PROCEDURE.SAME_OFFICER", same_officer, lambda p: bool(p.pairs)),
    Violation("PROCEDURE.NOT_ACCEPTED", not_accepted, lambda p: p.spot),
    Violation("PROCEDURE.REPEATED_SUPPLEMENT", repeated_supplement, lambda p: not p.spot and len(p.steps) >= 2),
    Violation("PROCEDURE.ON_THE_SPOT_LATE", on_the_spot_late, lambda p: p.spot),
    Violation("PROCEDURE.TOO_FAST", too_fast, lambda p: p.min_minutes >= 3 and (p.spot or p.min_minutes <= 300)),
    Violation("PROCEDURE.OFF_HOURS", off_hours, _any),
    Violation("PROCEDURE.AFTER_COMPLETION", after_completion, _any),
    Violation("PROCEDURE.BACKDATED", backdated, _any),
    Violation("QUALITY.BAD_RATING", bad_rating, _any),
    Violation("QUALITY.BAD_RATING_UNRESOLVED", bad_rating_unresolved, _any),
    Violation("QUALITY.COMPLAINT_OVERDUE", complaint_overdue, _any),
)
"""Every rule code of docs/rules.md and the injection that makes it fire."""
