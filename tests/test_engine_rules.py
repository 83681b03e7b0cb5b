"""Fee, procedure and service-quality rules: one positive and one negative case per rule, each
positive with the message an inspector reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.engine_kit import CaseScript, engine, run

UNTIL = "2027-03-31 00:00"


def base(c: CaseScript, *, steps: bool = True) -> CaseScript:
    """A clean promised case (T-PROM5) accepted Mon 2026-11-02, all steps by distinct officers."""
    c.accepted_on("2026-11-02 09:00")
    if steps:
        c.e("step_completed", "2026-11-02 10:00", step="受理", officer_id="A1")
        c.e("step_completed", "2026-11-03 10:00", step="审查", officer_id="A2")
        c.e("step_completed", "2026-11-04 10:00", step="审核", officer_id="A3")
        c.e("step_completed", "2026-11-04 15:00", step="批准", officer_id="A4")
    return c


def paid(c: CaseScript, amount: int = 10, channel: str = "bank") -> CaseScript:
    return (c.e("fee_assessed", "2026-11-04 16:00", fee_code="F-GB", amount=amount)
            .e("fee_paid", "2026-11-04 16:30", fee_code="F-GB", amount=amount, channel=channel))


def close(c: CaseScript) -> CaseScript:
    return c.e("decided", "2026-11-05 10:00", outcome="approved").e("completed", "2026-11-05 11:00")


def fast(c: CaseScript, day: str) -> CaseScript:
    """All four steps of T-PROM5 within the hour after 09:00, by distinct officers."""
    for n, step in enumerate(["受理", "审查", "审核", "批准"]):
        c.e("step_completed", f"{day} 09:{10 * (n + 1)}", step=step, officer_id=f"A{n + 1}")
    return c


def spot(c: CaseScript, accepted: str, completed: str) -> CaseScript:
    s = CaseScript(c.case_id, "T-SPOT").accepted_on(accepted)
    return s.e("step_completed", accepted, step="受理", officer_id="B1").e("step_completed", completed, step="办结",
                                                                          officer_id="B1").e("completed", completed)


Script = Callable[[CaseScript], CaseScript]

POSITIVE: list[tuple[str, Script, str]] = [
    ("FEE.NO_BASIS", lambda c: close(base(c).e("fee_assessed", "2026-11-04 16:00", fee_code="X-99", amount=5)
                                     .e("fee_paid", "2026-11-04 16:30", fee_code="X-99", amount=5, channel="bank")),
     "收费项目X-99不在该事项收费目录中，属无依据收费"),
    ("FEE.OVER_STANDARD", lambda c: close(paid(base(c), amount=15)), "「工本费」开具收费通知15元，超过收费标准10元"),
    ("FEE.CASH_AT_WINDOW", lambda c: close(paid(base(c), channel="window_cash")), "在窗口以现金收取10元"),
    ("FEE.AMOUNT_MISMATCH", lambda c: close(base(c).e("fee_assessed", "2026-11-04 16:00", fee_code="F-GB", amount=10)
                                            .e("fee_paid", "2026-11-04 16:30", fee_code="F-GB", amount=8, channel="bank")),
     "办结时应收10元，实收8元、减免0元，合计8元，与应收不符"),
    ("FEE.DUPLICATE", lambda c: close(paid(base(c)).e("fee_assessed", "2026-11-04 17:00", fee_code="F-GB", amount=10)
                                      .e("fee_paid", "2026-11-04 17:10", fee_code="F-GB", amount=10, channel="bank")),
     "收费项目F-GB在同一办件中第2次开具收费通知"),
    ("FEE.NOT_REFUNDED", lambda c: paid(base(c)).e("decided", "2026-11-05 10:00", outcome="denied"),
     "已收10元，应在10个工作日内（2026-11-19 24:00前）退还，逾期未退"),
    ("FEE.DELIVERED_UNPAID", lambda c: base(c).e("fee_assessed", "2026-11-04 16:00", fee_code="F-GB", amount=10)
     .e("decided", "2026-11-05 10:00", outcome="approved").e("delivered", "2026-11-05 10:30")
     .e("fee_paid", "2026-11-05 10:45", fee_code="F-GB", amount=10, channel="bank").e("completed", "2026-11-05 11:00"),
     "2026-11-05 10:30出证送达时，收费项目F-GB尚未缴费或减免"),
    ("FEE.WAIVER_UNAPPROVED", lambda c: close(base(c).e("fee_assessed", "2026-11-04 16:00", fee_code="F-GB", amount=10)
                                              .e("fee_waived", "2026-11-04 16:10", fee_code="F-GB", amount=10)),
     "减免10元（收费代码F-GB），无减免审批文号"),
    ("PROCEDURE.SKIPPED_STEP", lambda c: close(base(c, steps=False).e("step_completed", "2026-11-02 10:00", step="受理",
                                                                      officer_id="A1")),
     "缺少必经环节：审查、审核、批准"),
    ("PROCEDURE.OUT_OF_ORDER", lambda c: close(base(c, steps=False)
                                               .e("step_completed", "2026-11-02 10:00", step="受理", officer_id="A1")
                                               .e("step_completed", "2026-11-03 10:00", step="审查", officer_id="A2")
                                               .e("step_completed", "2026-11-03 15:00", step="批准", officer_id="A4")
                                               .e("step_completed", "2026-11-04 10:00", step="审核", officer_id="A3")),
     "「审核」于2026-11-04 10:00完成，但其后的环节批准已先行完成"),
    ("PROCEDURE.SAME_OFFICER", lambda c: close(base(c, steps=False)
                                               .e("step_completed", "2026-11-02 10:00", step="受理", officer_id="A1")
                                               .e("step_completed", "2026-11-03 10:00", step="审查", officer_id="A2")
                                               .e("step_completed", "2026-11-04 10:00", step="审核", officer_id="A3")
                                               .e("step_completed", "2026-11-04 15:00", step="批准", officer_id="A3")),
     "「审核」与「批准」由同一经办人A3完成，违反审批分离"),
    ("PROCEDURE.NOT_ACCEPTED", lambda c: fast(c.e("submitted", "2026-11-02 09:00"), "2026-11-02")
     .e("completed", "2026-11-02 11:00"), "于2026-11-02 11:00办结，但没有受理记录"),
    ("PROCEDURE.REPEATED_SUPPLEMENT", lambda c: close(base(c).e("supplement_requested", "2026-11-03 11:00")
                                                      .e("supplement_received", "2026-11-03 15:00")
                                                      .e("supplement_requested", "2026-11-03 16:00")
                                                      .e("supplement_received", "2026-11-04 09:00")),
     "于2026-11-03 16:00第二次要求补正材料，未做到一次性告知"),
    ("PROCEDURE.ON_THE_SPOT_LATE", lambda c: spot(c, "2026-11-02 15:00", "2026-11-03 09:30"),
     "为即办件，于2026-11-02 15:00受理，应当日办结"),
    ("PROCEDURE.TOO_FAST", lambda c: fast(base(c, steps=False), "2026-11-02").e("completed", "2026-11-02 10:00"),
     "受理后60分钟即办结，短于合理最短办理时间120分钟"),
    ("PROCEDURE.OFF_HOURS", lambda c: base(c).e("decided", "2026-11-04 23:10", outcome="approved")
     .e("completed", "2026-11-05 09:00"), "于夜间2026-11-04 23:10作出决定"),
    ("PROCEDURE.AFTER_COMPLETION", lambda c: close(base(c)).e("step_completed", "2026-11-06 10:00", step="审核",
                                                              officer_id="A9"),
     "已于2026-11-05 11:00办结，2026-11-06 10:00又记录了「step_completed」操作"),
    ("PROCEDURE.BACKDATED", lambda c: close(base(c)).e("rated", "2026-11-05 12:00", level=5,
                                                       recorded_at="2026-11-10T12:00:00+08:00"),
     "晚120小时，容忍72小时），疑似补录"),
    ("QUALITY.BAD_RATING", lambda c: close(base(c)).e("rated", "2026-11-05 12:00", level=2)
     .e("rating_resolved", "2026-11-09 10:00"), "收到差评（不满意），窗口规划窗口须在15个工作日内回访整改"),
    ("QUALITY.BAD_RATING_UNRESOLVED+QUALITY.BAD_RATING", lambda c: close(base(c)).e("rated", "2026-11-05 12:00", level=1),
     "整改时限15个工作日，应于2026-11-26 24:00前完成回访整改，逾期未整改"),
    ("QUALITY.COMPLAINT_OVERDUE", lambda c: close(base(c)).e("complaint_filed", "2026-11-05 14:00", complaint_id="TS1"),
     "投诉TS1于2026-11-05 14:00提出，办理时限5个工作日，应于2026-11-12 24:00前办结"),
]

NEGATIVE: list[tuple[str, Script]] = [
    ("FEE.*, PROCEDURE.*, QUALITY.*: a clean case", lambda c: close(paid(base(c))).e("delivered", "2026-11-05 15:00")
     .e("rated", "2026-11-05 16:00", level=5)),
    ("FEE.NOT_REFUNDED: refunded in time", lambda c: paid(base(c)).e("decided", "2026-11-05 10:00", outcome="denied")
     .e("completed", "2026-11-05 11:00").e("fee_refunded", "2026-11-10 10:00", fee_code="F-GB", amount=10)),
    ("FEE.WAIVER_UNAPPROVED: waiver with approval", lambda c: close(
        base(c).e("fee_assessed", "2026-11-04 16:00", fee_code="F-GB", amount=10)
        .e("fee_waived", "2026-11-04 16:10", fee_code="F-GB", amount=10, approval_ref="减免〔2026〕3号"))),
    ("PROCEDURE.NOT_ACCEPTED: acceptance arrives after completion but happened before",
     lambda c: close(base(c, steps=False).e("step_completed", "2026-11-02 10:00", step="受理", officer_id="A1")
                     .e("step_completed", "2026-11-03 10:00", step="审查", officer_id="A2")
                     .e("step_completed", "2026-11-04 10:00", step="审核", officer_id="A3")
                     .e("step_completed", "2026-11-04 15:00", step="批准", officer_id="A4"))),
    ("PROCEDURE.ON_THE_SPOT_LATE: same day", lambda c: spot(c, "2026-11-02 15:00", "2026-11-02 15:20")),
    ("QUALITY.COMPLAINT_OVERDUE: resolved in time", lambda c: close(base(c))
     .e("complaint_filed", "2026-11-05 14:00", complaint_id="TS1")
     .e("complaint_resolved", "2026-11-09 14:00", complaint_id="TS1")),
    ("QUALITY.BAD_RATING: level 3 is not bad", lambda c: close(base(c)).e("rated", "2026-11-05 12:00", level=3)),
]


@pytest.mark.parametrize(("rule", "script", "message"), POSITIVE, ids=[p[0] for p in POSITIVE])
def test_rule_fires_with_its_message(rule: str, script: Script, message: str) -> None:
    """``rule`` may name consequences after a '+': they must fire too, and nothing else may."""
    main, *also = rule.split("+")
    c = script(CaseScript(f"P-{main}"))
    found = [f for f in run(c.events, UNTIL) if not f.rule.startswith("TIMEOUT.")]
    assert sorted(f.rule for f in found) == sorted([main, *also]), [(f.rule, f.message) for f in found]
    hit = next(f for f in found if f.rule == main)
    assert message in hit.message, hit.message
    again = [f for f in run(c.events + c.events[:3], UNTIL) if f.rule == main]
    assert [f.finding_id for f in again] == [hit.finding_id]  # fires once, same id


@pytest.mark.parametrize(("label", "script"), NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_rule_stays_silent(label: str, script: Script) -> None:
    c = script(CaseScript("N1"))
    found = [(f.rule, f.message) for f in run(c.events, UNTIL) if not f.rule.startswith("TIMEOUT.")]
    assert found == []


def test_thresholds_come_from_configuration() -> None:
    c = close(base(CaseScript("Q"))).e("rated", "2026-11-05 12:00", level=1).e("rating_resolved", "2026-11-16 10:00")
    default = {f.rule for f in run(c.events, UNTIL)}
    assert "QUALITY.BAD_RATING_UNRESOLVED" not in default  # within 15 working days
    strict = {f.rule for f in run(c.events, UNTIL, engine(bad_rating_days=5))}
    assert "QUALITY.BAD_RATING_UNRESOLVED" in strict  # a local rule of 5 working days


def test_unknown_item_and_orphan_events_are_noted_not_dropped() -> None:
    from streams.embedded import run_events
    c = CaseScript("U", item="NOPE").accepted_on("2026-11-02 09:00")
    orphan = CaseScript("O").e("resumed", "2026-11-03 09:00")
    res = run_events(engine(), c.events + orphan.events + c.events[:1])
    kinds = sorted(n.kind for n in res.notes)
    assert kinds == ["duplicate_event", "impossible_transition", "no_intake", "unknown_item"]
