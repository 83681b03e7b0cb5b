"""Service-quality rules (好差评, 投诉): bad ratings and complaints must be followed up in time."""

from __future__ import annotations

from collections.abc import Callable

from rules.context import CaseContext, Deadline, fmt_time
from rules.state import Fact

RATING_BASIS = "《国务院办公厅关于建立政务服务“好差评”制度提高政务服务水平的意见》（国办发〔2019〕51号）"
LEVELS = {1: "非常不满意", 2: "不满意", 3: "基本满意", 4: "满意", 5: "非常满意"}


def on_rated(ctx: CaseContext, f: Fact) -> None:
    level = int(f.num or 0)
    if level <= ctx.config.bad_rating_max_level:
        ctx.raise_finding("QUALITY.BAD_RATING", f.eid, f.t,
                          f"{ctx.item_label()}于{fmt_time(f.t)}收到差评（{LEVELS.get(level, level)}），"
                          f"窗口{ctx.state.info.window or '未知'}须在{ctx.config.bad_rating_days}个工作日内回访整改。",
                          RATING_BASIS, officer=f.officer, event_id=f.eid)


ON_EVENT: dict[str, list[Callable[[CaseContext, Fact], None]]] = {"rated": [on_rated]}


def deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    d = ctx.d
    if d.quality is None:  # never rated nor complained about (most cases, most of their life)
        return
    cfg = ctx.config
    for t, eid, level in d.ratings:
        if level > cfg.bad_rating_max_level:
            continue
        at = ctx.clock.end_after(t, cfg.bad_rating_days)
        if at is None:
            continue
        fixed = min((r for r in d.rating_resolved if r >= t), default=None)
        out.append(Deadline("QUALITY.BAD_RATING_UNRESOLVED", eid, at, fixed, _rating_msg, None, (ctx, t, at)))
    for t, eid, cid in d.complaints:
        at = ctx.clock.end_after(t, cfg.complaint_days)
        if at is None:
            continue
        fixed = min((r for r, rid in d.complaint_resolved if r >= t and (cid is None or rid is None or rid == cid)),
                    default=None)
        out.append(Deadline("QUALITY.COMPLAINT_OVERDUE", cid or eid, at, fixed, _complaint_msg, None,
                            (ctx, t, at, cid)))


def _rating_msg(ctx: CaseContext, t: float, at: float) -> tuple[str, str]:
    return (f"{ctx.item_label()}于{fmt_time(t)}收到差评，整改时限{ctx.config.bad_rating_days}个工作日，"
            f"应于{fmt_time(at)}前完成回访整改，逾期未整改。", RATING_BASIS)


def _complaint_msg(ctx: CaseContext, t: float, at: float, cid: str | None) -> tuple[str, str]:
    label = f"投诉{cid}" if cid else "投诉"
    return (f"{ctx.item_label()}{label}于{fmt_time(t)}提出，办理时限{ctx.config.complaint_days}个工作日，"
            f"应于{fmt_time(at)}前办结，逾期未办结。", "政务服务投诉处理规定（本地配置时限）")
