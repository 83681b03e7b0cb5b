"""Procedure rules (程序异常): skipped or reordered steps, one officer on both sides, late or odd records.

Step rules compare the case with the catalog's required steps of the catalog version in force when
the case was accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from rules.clock import day_end, instant
from rules.context import CaseContext, Deadline, fmt_time
from rules.registry import LAW
from rules.state import Fact, first_step
from schemas.events import AnyEvent


def on_step(ctx: CaseContext, f: Fact) -> None:
    d = ctx.d
    item = ctx.item
    step = f.s1 or ""
    if item is None or step not in item.steps:
        return
    first = d.steps.get(step)
    if first is None or first != f.t:
        return
    steps = d.steps
    early: list[str] = []
    if len(steps) > 1:  # some other step is done: was any that comes later done before this one?
        for s in item.steps[item.steps.index(step) + 1:]:
            done = steps.get(s)
            if done is not None and done < f.t:
                early.append(s)
    if early:
        ctx.raise_finding("PROCEDURE.OUT_OF_ORDER", step, f.t,
                          f"{ctx.item_label()}「{step}」于{fmt_time(f.t)}完成，但其后的环节{'、'.join(early)}已先行完成"
                          f"（规定顺序：{'→'.join(item.steps)}）。",
                          ctx.catalog_basis("办理环节 " + "→".join(item.steps)), officer=f.officer, event_id=f.eid)
    for a, b in item.separate_officers:
        if step not in (a, b):
            continue
        other_step = b if step == a else a
        other = d.steps.get(other_step)
        if other is None or other > f.t or f.officer is None:
            continue
        done = first_step(ctx.state.facts, other_step)
        if done is None or done.officer != f.officer:
            continue
        ctx.raise_finding("PROCEDURE.SAME_OFFICER", f"{a}/{b}", f.t,
                          f"{ctx.item_label()}「{a}」与「{b}」由同一经办人{f.officer}完成，违反审批分离。",
                          ctx.catalog_basis(f"审批分离 {a}/{b}"), officer=f.officer, event_id=f.eid)


def on_supplement(ctx: CaseContext, f: Fact) -> None:
    if ctx.d.supplement_count == 2:
        ctx.raise_finding("PROCEDURE.REPEATED_SUPPLEMENT", "repeat", f.t,
                          f"{ctx.item_label()}于{fmt_time(f.t)}第二次要求补正材料，未做到一次性告知。",
                          f"{LAW}第三十二条（一次性告知）", officer=f.officer, event_id=f.eid)


def on_completed(ctx: CaseContext, f: Fact) -> None:
    d = ctx.d
    item = ctx.item
    if f.t != d.completed_t or item is None or item.min_minutes is None or d.accepted_t is None:
        return
    minutes = (f.t - d.accepted_t) / 60
    if minutes < item.min_minutes:
        ctx.raise_finding("PROCEDURE.TOO_FAST", "too_fast", f.t,
                          f"{ctx.item_label()}受理后{minutes:.0f}分钟即办结，短于合理最短办理时间{item.min_minutes}分钟。",
                          ctx.catalog_basis(f"最短办理时间 {item.min_minutes}分钟"), officer=f.officer, event_id=f.eid)


@lru_cache(maxsize=64)
def _hhmm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def on_decision(ctx: CaseContext, f: Fact) -> None:
    cfg = ctx.config
    if f.type == "step_completed" and f.s1 not in cfg.off_hours_steps:
        return
    minute = int((f.t + 8 * 3600) % 86400) // 60  # China time of day (UTC+8, no daylight saving)
    night = minute >= _hhmm(cfg.off_hours_start) or minute < _hhmm(cfg.off_hours_end)
    holiday = not ctx.clock.working_at(f.t)
    if night or holiday:
        what = "作出决定" if f.type == "decided" else f"完成「{f.s1}」"
        when = "非工作日" if holiday else "夜间"
        ctx.raise_finding("PROCEDURE.OFF_HOURS", f.eid, f.t,
                          f"{ctx.item_label()}于{when}{fmt_time(f.t)}{what}"
                          f"（工作时间外：{cfg.off_hours_start}至次日{cfg.off_hours_end}及非工作日）。",
                          "政务服务中心工作时间与审批留痕规定（本地配置）", officer=f.officer, event_id=f.eid)


def on_after_completion(ctx: CaseContext, f: Fact) -> None:
    done = ctx.d.completed_t
    if done is not None and f.t > done:
        ctx.raise_finding("PROCEDURE.AFTER_COMPLETION", f.eid, f.t,
                          f"{ctx.item_label()}已于{fmt_time(done)}办结，{fmt_time(f.t)}又记录了「{f.type}」操作。",
                          "办件信息办结后不得变更（审批留痕）", officer=f.officer, event_id=f.eid)


def on_any(ctx: CaseContext, f: Fact, ev: AnyEvent) -> None:
    """PROCEDURE.BACKDATED: recorded (the event's ``recorded_at``) long after it happened (补录).

    The lag is one subtraction of the event's two times (same zone: no offset arithmetic), so the rule
    costs next to nothing on the events that are on time (all but a few).
    """
    rec = ev.recorded_at
    if rec is None:
        return
    tol = ctx.config.backdate_tolerance_hours
    lag = (rec - ev.occurred_at).total_seconds()
    if lag > tol * 3600:
        ctx.raise_finding("PROCEDURE.BACKDATED", f.eid, f.t,
                          f"{ctx.item_label()}「{f.type}」发生于{fmt_time(f.t)}，却在{fmt_time(instant(rec))}才录入系统"
                          f"（晚{lag / 3600:.0f}小时，容忍{tol}小时），疑似补录。",
                          "审批过程实时留痕规定（本地配置容忍时间）", officer=f.officer, event_id=f.eid)


_AFTER = [on_after_completion]
ON_EVENT: dict[str, list[Callable[[CaseContext, Fact], None]]] = {
    "decided": [on_decision, *_AFTER],
    "completed": [on_completed],
    "step_completed": [on_step, on_decision, *_AFTER],
    "supplement_requested": [on_supplement],
    "fee_assessed": _AFTER,
    "fee_paid": _AFTER,
    "fee_waived": _AFTER,
}
ON_ANY = [on_any]  # rules on the event alone: (context, fact, the event as received)


def deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    _on_close(ctx, out)
    _on_the_spot(ctx, out)


def _on_close(ctx: CaseContext, out: list[Deadline]) -> None:
    """The first decided/completed: were all steps done before it, and was the case accepted?

    These judge an absence, so they are due at the closing event itself and fire when the clock
    passes it: an acceptance or a step that happened earlier but arrives later still counts.
    """
    d = ctx.d
    x = d.close_t
    if x is None:
        return
    officer = d.close_officer
    out.append(Deadline("PROCEDURE.NOT_ACCEPTED", "not_accepted", x, d.accepted_t, _not_accepted_message,
                        officer, (ctx, x)))
    item = ctx.item
    if item is not None and item.steps:
        steps = d.steps
        satisfied: float | None = None  # when the last required step was done; None while one is missing
        for s in item.steps:
            done = steps.get(s)
            if done is None:
                satisfied = None
                break
            if satisfied is None or done > satisfied:
                satisfied = done
        out.append(Deadline("PROCEDURE.SKIPPED_STEP", "skipped", x, satisfied, _skipped_message, officer, (ctx, x)))


# Messages are built only when a finding fires; module-level functions, not closures (see rules/timeouts.py).

def _close_verb(ctx: CaseContext, x: float) -> str:
    d = ctx.d
    return "办结" if x == d.completed_t and d.close_eid != _decided_eid(ctx) else "作出决定"


def _not_accepted_message(ctx: CaseContext, x: float) -> tuple[str, str]:
    return f"{ctx.item_label()}于{fmt_time(x)}{_close_verb(ctx, x)}，但没有受理记录。", f"{LAW}第三十二条"


def _skipped_message(ctx: CaseContext, x: float) -> tuple[str, str]:
    item = ctx.item
    steps = ctx.d.steps
    missing = "、".join(s for s in item.steps if (t := steps.get(s)) is None or t > x)  # type: ignore[union-attr]
    order = "→".join(item.steps)  # type: ignore[union-attr]
    return (f"{ctx.item_label()}于{fmt_time(x)}{_close_verb(ctx, x)}，缺少必经环节：{missing}（规定环节：{order}）。",
            ctx.catalog_basis("办理环节 " + order))


def _decided_eid(ctx: CaseContext) -> str | None:
    for f in ctx.state.facts:
        if f.type == "decided":
            return f.eid
    return None


def _on_the_spot(ctx: CaseContext, out: list[Deadline]) -> None:
    """PROCEDURE.ON_THE_SPOT_LATE: a 即办件 must be done the day it is accepted."""
    d = ctx.d
    item = ctx.item
    if item is None or item.kind != "on_the_spot" or d.accepted_t is None:
        return
    acc = d.accepted_t
    out.append(Deadline("PROCEDURE.ON_THE_SPOT_LATE", "on_the_spot", day_end(acc), d.terminal_t,
                        _on_the_spot_message, None, (ctx, acc)))


def _on_the_spot_message(ctx: CaseContext, acc: float) -> tuple[str, str]:
    return (f"{ctx.item_label()}为即办件，于{fmt_time(acc)}受理，应当日办结，当日未办结。",
            ctx.catalog_basis("即办件 当场办结"))
