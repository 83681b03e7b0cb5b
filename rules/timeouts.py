"""Timeout rules (超时, 预警): deadlines in working days that fire even when no event arrives.

Each rule here only *declares* its deadline and what satisfies it; the engine fires it when the
clock passes. That keeps "fired by the clock" and "shown late by a completion event" one rule, with
one message and one id.
"""

from __future__ import annotations

import math
from datetime import date

from rules.clock import china_date, end_of, pause_view, start_of
from rules.context import CaseContext, Deadline, fmt_day, fmt_time
from rules.registry import LAW


def _min(*ts: float | None) -> float | None:
    vals = [t for t in ts if t is not None]
    return min(vals) if vals else None


def clock_start(ctx: CaseContext) -> tuple[date, float] | None:
    """The date the limit counts from and the instant it started (第32条 when intake was late)."""
    d = ctx.d
    if d.accepted_t is None:
        return None
    acc = china_date(d.accepted_t)
    if d.submitted_t is not None:
        sub = china_date(d.submitted_t)
        limit = ctx.clock.nth(sub, ctx.config.intake_days)
        if limit is not None and acc > limit:
            return sub, d.submitted_t
    return acc, d.accepted_t


def warning_day_number(n: int, days_left: int, fraction: float) -> int:
    """Which working day of an N-day limit the warning fires at the start of (docs/rules.md)."""
    by_left = n - days_left + 1
    by_share = math.ceil(fraction * n - 1e-9) + 1
    return min(n, max(1, min(by_left, by_share)))


def deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    d = ctx.d
    cfg = ctx.config
    clock = ctx.clock
    terminal = d.terminal_t

    if d.submitted_t is not None:
        sub_day = china_date(d.submitted_t)
        limit_day = clock.nth(sub_day, cfg.intake_days)
        if limit_day is not None:
            first_supplement = min((p.start for p in d.pauses if p.kind == "supplement"), default=None)
            i_at = end_of(limit_day)
            out.append(Deadline(
                "TIMEOUT.INTAKE_OVERDUE", "TIMEOUT.INTAKE_OVERDUE", i_at,
                _min(d.accepted_t, first_supplement, terminal),
                lambda: (f"{ctx.item_label()}于{fmt_time(d.submitted_t)}收件，应在{cfg.intake_days}个工作日内"
                         f"（{fmt_day(i_at - 1)}前）作出是否受理的决定或一次性告知补正，逾期未处理。",
                         f"{LAW}第三十二条"),
            ))

    start = clock_start(ctx)
    if start is None:
        return
    s_day, s_t = start
    item = ctx.item
    pv = pause_view(d)
    ext = d.extension_days

    if item is not None and item.kind == "promised":
        due_at = ctx.state.info.due_at
        if due_at is not None:
            due_day = china_date(due_at - 1)
            n = clock.working_days_between(s_day, due_day)
            offset = due_at - end_of(due_day)
            source = f"受理时公布的承诺办结时间{fmt_time(due_at)}"
        else:
            n = item.promised_days
            offset = 0.0
            source = f"承诺时限{n}个工作日"
        if ext:
            source += f"，延期{ext}个工作日"
        n += ext
        if n >= 1:
            od = clock.nth(s_day, n, pv)
            if od is not None:
                p_at = end_of(od) + offset
                basis = ctx.catalog_basis(source)
                out.append(Deadline(
                    "TIMEOUT.PROMISED_OVERDUE", "TIMEOUT.PROMISED_OVERDUE", p_at, terminal,
                    lambda: (f"{ctx.item_label()}{source}，应于{fmt_time(p_at)}前办结，逾期未办结。", basis),
                ))
                k = warning_day_number(n, cfg.warning_days_left, cfg.warning_fraction)
                wd = clock.nth(s_day, k, pv)
                if wd is not None:
                    w_at = start_of(wd)
                    left = n - k + 1
                    out.append(Deadline(
                        "TIMEOUT.PROMISED_WARNING", "TIMEOUT.PROMISED_WARNING", w_at, terminal,
                        lambda: (f"{ctx.item_label()}{source}，截至{fmt_day(w_at)}仅剩{left}个工作日，"
                                 f"须于{fmt_time(p_at)}前办结。", basis),
                    ))

    m = (item.statutory_days if item is not None else cfg.default_statutory_days) + ext
    sd = clock.nth(s_day, m, pv)
    if sd is not None:
        st_at = end_of(sd)
        out.append(Deadline(
            "TIMEOUT.STATUTORY_OVERDUE", "TIMEOUT.STATUTORY_OVERDUE", st_at, _min(terminal, d.decided_t),
            lambda: (f"{ctx.item_label()}法定时限{m - ext}个工作日" + (f"（含延期{ext}个工作日）" if ext else "")
                     + f"，应于{fmt_time(st_at)}前作出决定，逾期未决定。",
                     f"{LAW}第四十二条" + ("、第四十五条" if d.pauses else "")),
        ))

    for p in d.pauses:
        if p.kind == "suspension" and p.planned_days:
            od2 = clock.nth(china_date(p.start), p.planned_days)
            if od2 is not None:
                at3 = end_of(od2)
                out.append(Deadline(
                    "TIMEOUT.SUSPENSION_OVERRUN", p.eid, at3, _min(p.end, terminal),
                    _suspension_message(ctx, p.start, p.planned_days, at3),
                ))


def step_deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    """TIMEOUT.STEP_OVERDUE: kept apart because only step events (and pauses) move these deadlines."""
    item = ctx.item
    if item is None or not item.step_limits:
        return
    start = clock_start(ctx)
    if start is None:
        return
    d = ctx.d
    clock = ctx.clock
    terminal = d.terminal_t
    pv = pause_view(d)
    s_t = start[1]
    prev_t = s_t
    for step in item.steps:
        done = d.steps.get(step)
        limit = item.step_limits.get(step)
        if limit is not None:
            sd2 = clock.nth(china_date(prev_t), limit, pv)
            if sd2 is not None:
                at2 = end_of(sd2)
                out.append(Deadline(
                    "TIMEOUT.STEP_OVERDUE", step, at2, _min(done[0] if done else None, terminal),
                    _step_message(ctx, step, limit, at2),
                    officer=done[1] if done else None,
                ))
        if done is None:
            break
        prev_t = max(prev_t, done[0])


def _step_message(ctx: CaseContext, step: str, limit: int, at: float):
    return lambda: (f"{ctx.item_label()}「{step}」环节时限{limit}个工作日，应于{fmt_time(at)}前完成，逾期未完成。",
                    ctx.catalog_basis(f"环节时限 {step} {limit}个工作日"))


def _suspension_message(ctx: CaseContext, start: float, days: int, at: float):
    return lambda: (f"{ctx.item_label()}于{fmt_time(start)}进入特别程序，计划{days}个工作日，"
                    f"应于{fmt_time(at)}前恢复办理，逾期未恢复。", f"{LAW}第四十五条")
