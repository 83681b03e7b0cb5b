"""Timeout rules (超时, 预警): deadlines in working days that fire even when no event arrives.

Each rule here only *declares* its deadline and what satisfies it; the engine fires it when the
clock passes. That keeps "fired by the clock" and "shown late by a completion event" one rule, with
one message and one id.
"""

from __future__ import annotations

import math
from functools import lru_cache

from rules.clock import PauseView, china_date, end_of, pause_view
from rules.context import CaseContext, Deadline, fmt_day, fmt_time
from rules.registry import LAW


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None or a <= b:
        return a
    return b


def clock_start(ctx: CaseContext, intake_end: float | None = None) -> float | None:
    """The instant the limit counts from: acceptance, or submission when intake was late (第32条).

    Limits count working days after the China date of this instant. ``intake_end``: the end of the last
    day intake may take, when the caller has it already.
    """
    d = ctx.d
    acc = d.accepted_t
    if acc is None:
        return None
    sub = d.submitted_t
    if sub is not None:
        limit = intake_end if intake_end is not None else ctx.clock.end_after(sub, ctx.config.intake_days)
        if limit is not None and acc >= limit:
            return sub
    return acc


@lru_cache(maxsize=1024)  # a handful of limits and one configuration: asked once per promised deadline
def warning_day_number(n: int, days_left: int, fraction: float) -> int:
    """Which working day of an N-day limit the warning fires at the start of (docs/rules.md)."""
    by_left = n - days_left + 1
    by_share = math.ceil(fraction * n - 1e-9) + 1
    return min(n, max(1, min(by_left, by_share)))


def promised_limit(ctx: CaseContext, s_t: float, pv: PauseView) -> tuple[int, float, float | None, int] | None:
    """(N, overdue instant, warning instant, warning day number) of a 承诺件; None if unknown or 即办件."""
    item = ctx.item
    if item is None or item.kind != "promised":
        return None
    clock = ctx.clock
    due_at = ctx.state.info.due_at
    if due_at is not None:
        due_day = china_date(due_at - 1)
        n = clock.working_days_between(china_date(s_t), due_day)
        offset = due_at - end_of(due_day)
    else:
        n = item.promised_days
        offset = 0.0
    n += ctx.d.extension_days
    if n < 1:
        return None
    od = clock.end_after(s_t, n, pv)
    if od is None:
        return None
    cfg = ctx.config
    k = warning_day_number(n, cfg.warning_days_left, cfg.warning_fraction)
    wd = clock.end_after(s_t, k, pv)
    return n, od + offset, wd - 86400 if wd is not None else None, k  # the warning: 00:00 of day k


def statutory_limit(ctx: CaseContext, s_t: float, pv: PauseView) -> float | None:
    """The instant the statutory limit (法定时限, plus an extension) runs out; None while a pause hides it."""
    item = ctx.item
    m = (item.statutory_days if item is not None else ctx.config.default_statutory_days) + ctx.d.extension_days
    return ctx.clock.end_after(s_t, m, pv)


def due_instants(ctx: CaseContext) -> tuple[float | None, float | None]:
    """(promised, statutory) deadline instants as the facts stand, met or not — for case facts."""
    s_t = clock_start(ctx)
    if s_t is None:
        return None, None
    pv = pause_view(ctx.d)
    promised = promised_limit(ctx, s_t, pv)
    return (promised[1] if promised else None), statutory_limit(ctx, s_t, pv)


def deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    d = ctx.d
    cfg = ctx.config
    clock = ctx.clock
    terminal = d.terminal_t

    i_at = None
    if d.submitted_t is not None:
        i_at = clock.end_after(d.submitted_t, cfg.intake_days)
        if i_at is not None:
            i_ok = _min(d.accepted_t, terminal)
            if d.pauses:  # told what to supplement (一次性告知) also answers the intake in time
                i_ok = _min(i_ok, min((p.start for p in d.pauses if p.kind == "supplement"), default=None))
        if i_at is not None and (i_ok is None or i_ok > i_at):  # a deadline already met is not kept
            out.append(Deadline("TIMEOUT.INTAKE_OVERDUE", "TIMEOUT.INTAKE_OVERDUE", i_at, i_ok,
                                _intake_message, None, (ctx, i_at)))

    s_t = clock_start(ctx, i_at)
    if s_t is None:
        return
    item = ctx.item
    pv = pause_view(d)
    ext = d.extension_days

    promised = promised_limit(ctx, s_t, pv)
    if promised is not None:
        n, p_at, w_at, k = promised
        if terminal is None or terminal > p_at:
            out.append(Deadline("TIMEOUT.PROMISED_OVERDUE", "TIMEOUT.PROMISED_OVERDUE", p_at, terminal,
                                _promised_message, None, (ctx, p_at)))
        if w_at is not None and (terminal is None or terminal > w_at):
            out.append(Deadline("TIMEOUT.PROMISED_WARNING", "TIMEOUT.PROMISED_WARNING", w_at, terminal,
                                _warning_message, None, (ctx, w_at, n - k + 1, p_at)))

    m = (item.statutory_days if item is not None else cfg.default_statutory_days) + ext
    st_at = statutory_limit(ctx, s_t, pv)
    st_ok = _min(terminal, d.decided_t)
    if st_at is not None and (st_ok is None or st_ok > st_at):
        out.append(Deadline("TIMEOUT.STATUTORY_OVERDUE", "TIMEOUT.STATUTORY_OVERDUE", st_at, st_ok,
                            _statutory_message, None, (ctx, m, ext, st_at)))

    for p in d.pauses:
        if p.kind == "suspension" and p.planned_days:
            at3 = clock.end_after(p.start, p.planned_days)
            if at3 is not None:
                out.append(Deadline("TIMEOUT.SUSPENSION_OVERRUN", p.eid, at3, _min(p.end, terminal),
                                    _suspension_message, None, (ctx, p.start, p.planned_days, at3)))


def step_deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    """TIMEOUT.STEP_OVERDUE: kept apart because only step events (and pauses) move these deadlines."""
    item = ctx.item
    if item is None or not item.step_limits:
        return
    s_t = clock_start(ctx)
    if s_t is None:
        return
    d = ctx.d
    clock = ctx.clock
    terminal = d.terminal_t
    pv = pause_view(d)
    prev_t = s_t
    for step in item.steps:
        done = d.steps.get(step)
        limit = item.step_limits.get(step)
        if limit is not None:
            at2 = clock.end_after(prev_t, limit, pv)
            if at2 is not None:
                out.append(Deadline(  # officer: who completes the step later is not known when it passes
                    "TIMEOUT.STEP_OVERDUE", step, at2, _min(done, terminal), _step_message,
                    None, (ctx, step, limit, at2)))
        if done is None:
            break
        prev_t = max(prev_t, done)


# Messages: built only when a deadline fires (formatting is the costly part), from the values the
# deadline was computed with. Module-level functions and an argument tuple, not closures: families run
# on most events, and a closure per deadline (with its cells) cost more than the rest of the deadline.

def _intake_message(ctx: CaseContext, i_at: float) -> tuple[str, str]:
    cfg = ctx.config
    return (f"{ctx.item_label()}于{fmt_time(ctx.d.submitted_t)}收件，应在{cfg.intake_days}个工作日内"  # type: ignore[arg-type]
            f"（{fmt_day(i_at - 1)}前）作出是否受理的决定或一次性告知补正，逾期未处理。", f"{LAW}第三十二条")


def _promised_source(ctx: CaseContext) -> str:
    due_at = ctx.state.info.due_at
    ext = ctx.d.extension_days
    text = (f"受理时公布的承诺办结时间{fmt_time(due_at)}" if due_at is not None
            else f"承诺时限{ctx.item.promised_days}个工作日")  # type: ignore[union-attr]
    return text + (f"，延期{ext}个工作日" if ext else "")


def _promised_message(ctx: CaseContext, p_at: float) -> tuple[str, str]:
    source = _promised_source(ctx)
    return (f"{ctx.item_label()}{source}，应于{fmt_time(p_at)}前办结，逾期未办结。", ctx.catalog_basis(source))


def _warning_message(ctx: CaseContext, w_at: float, left: int, p_at: float) -> tuple[str, str]:
    source = _promised_source(ctx)
    return (f"{ctx.item_label()}{source}，截至{fmt_day(w_at)}仅剩{left}个工作日，须于{fmt_time(p_at)}前办结。",
            ctx.catalog_basis(source))


def _statutory_message(ctx: CaseContext, m: int, ext: int, st_at: float) -> tuple[str, str]:
    return (f"{ctx.item_label()}法定时限{m - ext}个工作日" + (f"（含延期{ext}个工作日）" if ext else "")
            + f"，应于{fmt_time(st_at)}前作出决定，逾期未决定。",
            f"{LAW}第四十二条" + ("、第四十五条" if ctx.d.pauses else ""))


def _step_message(ctx: CaseContext, step: str, limit: int, at: float) -> tuple[str, str]:
    return (f"{ctx.item_label()}「{step}」环节时限{limit}个工作日，应于{fmt_time(at)}前完成，逾期未完成。",
            ctx.catalog_basis(f"环节时限 {step} {limit}个工作日"))


def _suspension_message(ctx: CaseContext, start: float, days: int, at: float) -> tuple[str, str]:
    return (f"{ctx.item_label()}于{fmt_time(start)}进入特别程序，计划{days}个工作日，"
            f"应于{fmt_time(at)}前恢复办理，逾期未恢复。", f"{LAW}第四十五条")
