"""Fee rules (违规收费): charges without basis, above standard, in cash, twice, unrefunded, unpaid.

票款分离 is the principle behind several of them: the window issues a payment notice and the bank
collects, so money never passes through an officer's hands.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from rules.context import CaseContext, Deadline, fmt_time
from rules.state import Fact

PRICE_LAW = "《行政事业性收费标准管理办法》"


def _fmt(amount: object) -> str:
    return f"{amount}元"


def on_fee_charged(ctx: CaseContext, f: Fact) -> None:
    """fee_assessed / fee_paid: is there a basis for the fee, and is it within the standard?"""
    item = ctx.item
    if item is None:
        return
    verb = "开具收费通知" if f.type == "fee_assessed" else "收取费用"
    fee = item.fee(f.s1 or "")
    if fee is None:
        why = "该事项不收费" if not item.fees else f"收费项目{f.s1}不在该事项收费目录中"
        ctx.raise_finding("FEE.NO_BASIS", f.s1 or f.eid, f.t,
                          f"{ctx.item_label()}{fmt_time(f.t)}{verb}{_fmt(f.num)}（收费代码{f.s1}），{why}，属无依据收费。",
                          ctx.catalog_basis("收费目录：" + ("无收费项目" if not item.fees else
                                                         "、".join(x.code for x in item.fees))),
                          officer=f.officer, event_id=f.eid)
    elif f.num is not None and f.num > fee.amount:
        ctx.raise_finding("FEE.OVER_STANDARD", fee.code, f.t,
                          f"{ctx.item_label()}「{fee.name}」{verb}{_fmt(f.num)}，超过收费标准{_fmt(fee.amount)}。",
                          ctx.catalog_basis(f"收费标准 {fee.code} {fee.name} {fee.amount}元"
                                            + (f"（{fee.basis}）" if fee.basis else "")),
                          officer=f.officer, event_id=f.eid)
    if f.type == "fee_assessed" and ctx.d.assessed.get(f.s1 or "", 0) >= 2:
        ctx.raise_finding("FEE.DUPLICATE", f.eid, f.t,
                          f"{ctx.item_label()}收费项目{f.s1}在同一办件中第{ctx.d.assessed[f.s1 or '']}次开具收费通知，属重复收费。",
                          PRICE_LAW, officer=f.officer, event_id=f.eid)


def on_fee_paid(ctx: CaseContext, f: Fact) -> None:
    on_fee_charged(ctx, f)
    if f.s2 == "window_cash":
        ctx.raise_finding("FEE.CASH_AT_WINDOW", f.eid, f.t,
                          f"{ctx.item_label()}{fmt_time(f.t)}在窗口以现金收取{_fmt(f.num)}（收费代码{f.s1}），"
                          f"违反票款分离规定（窗口开票、银行收款）。",
                          "《罚款决定与罚款收缴分离实施办法》及非税收入票款分离规定",
                          officer=f.officer, event_id=f.eid)


def on_fee_waived(ctx: CaseContext, f: Fact) -> None:
    if not f.s2:
        ctx.raise_finding("FEE.WAIVER_UNAPPROVED", f.eid, f.t,
                          f"{ctx.item_label()}{fmt_time(f.t)}减免{_fmt(f.num)}（收费代码{f.s1}），无减免审批文号。",
                          PRICE_LAW + "关于减免须经批准的规定", officer=f.officer, event_id=f.eid)


ON_EVENT: dict[str, list[Callable[[CaseContext, Fact], None]]] = {
    "fee_assessed": [on_fee_charged],
    "fee_paid": [on_fee_paid],
    "fee_waived": [on_fee_waived],
}


def deadlines(ctx: CaseContext, out: list[Deadline]) -> None:
    """Rules that judge an absence (of payment, of refund) wait for the clock to pass the moment.

    AMOUNT_MISMATCH and DELIVERED_UNPAID are due at the completion or delivery itself: a payment that
    happened before it but arrives later still counts, and the finding keeps the event's time.
    """
    if ctx.d.fee is None:  # no fee event yet (most cases): every fee deadline needs a ledger
        return
    _settlement(ctx, out)
    _not_refunded(ctx, out)


def _settlement(ctx: CaseContext, out: list[Deadline]) -> None:
    d = ctx.d
    if ctx.item is None:
        return
    if d.completed_t is not None and (d.assessed or d.paid_total or d.waived_total):
        x = d.completed_t
        sums = {"fee_assessed": Decimal(0), "fee_paid": Decimal(0), "fee_waived": Decimal(0)}
        for f in ctx.state.facts:
            if f.t <= x and f.type in sums and f.num is not None:
                sums[f.type] += f.num  # type: ignore[operator]
        assessed, paid, waived = sums["fee_assessed"], sums["fee_paid"], sums["fee_waived"]
        out.append(Deadline("FEE.AMOUNT_MISMATCH", "completion", x, x if paid + waived == assessed else None,
                            _mismatch_message, None, (ctx, assessed, paid, waived)))
    if d.delivered_t is not None and d.assessed:
        x2 = d.delivered_t
        due = [c for c, t in d.assessed_first.items() if t <= x2]
        if due:
            settle = [d.settled.get(c) for c in due]
            satisfied = max(settle) if all(t is not None for t in settle) else None  # type: ignore[type-var]
            out.append(Deadline("FEE.DELIVERED_UNPAID", d.delivered_eid or "delivered", x2, satisfied,
                                _unpaid_message, None, (ctx, x2, due)))


def _not_refunded(ctx: CaseContext, out: list[Deadline]) -> None:
    """FEE.NOT_REFUNDED: money kept after the case ended without a grant."""
    d = ctx.d
    if d.paid_total <= 0:
        return
    ends = [t for t in (d.rejected_t, d.withdrawn_t, d.decided_t if d.outcome == "denied" else None) if t is not None]
    if not ends:
        return
    t_end = min(ends)
    at = ctx.clock.end_after(t_end, ctx.config.refund_days)
    if at is None:
        return
    out.append(Deadline("FEE.NOT_REFUNDED", "refund", at, d.refunded_t, _refund_message, None, (ctx, t_end, at)))


# Messages are built only when a finding fires; module-level functions, not closures (see rules/timeouts.py).

def _mismatch_message(ctx: CaseContext, assessed: Decimal, paid: Decimal, waived: Decimal) -> tuple[str, str]:
    return (f"{ctx.item_label()}办结时应收{_fmt(assessed)}，实收{_fmt(paid)}、减免{_fmt(waived)}，"
            f"合计{_fmt(paid + waived)}，与应收不符。", PRICE_LAW)


def _unpaid_message(ctx: CaseContext, x2: float, due: list[str]) -> tuple[str, str]:
    settled = ctx.d.settled
    unpaid = [c for c in due if settled.get(c) is None or settled[c] > x2]
    return (f"{ctx.item_label()}{fmt_time(x2)}出证送达时，收费项目{'、'.join(unpaid)}尚未缴费或减免。",
            "票款分离规定：先缴费、后出证")


def _refund_message(ctx: CaseContext, t_end: float, at: float) -> tuple[str, str]:
    return (f"{ctx.item_label()}已于{fmt_time(t_end)}终止（不予受理/不予许可/撤回），已收{_fmt(ctx.d.paid_total)}，"
            f"应在{ctx.config.refund_days}个工作日内（{fmt_time(at)}前）退还，逾期未退。", PRICE_LAW)
