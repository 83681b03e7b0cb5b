"""Every rule code, its severity and its Chinese name: the public list inspectors and reports read.

A rule's logic lives in the module named for its family (``timeouts``, ``fees``, ``procedure``,
``quality``); this table is the one place that says what codes exist.
"""

from __future__ import annotations

from typing import NamedTuple

from rules.findings import Severity


class RuleInfo(NamedTuple):
    code: str
    severity: Severity
    name: str  # 中文名称
    family: str  # timeout | fee | procedure | quality


LAW = "《中华人民共和国行政许可法》"

RULES: dict[str, RuleInfo] = {
    r.code: r
    for r in [
        RuleInfo("TIMEOUT.PROMISED_WARNING", "yellow", "承诺时限预警", "timeout"),
        RuleInfo("TIMEOUT.PROMISED_OVERDUE", "red", "超承诺时限", "timeout"),
        RuleInfo("TIMEOUT.STATUTORY_OVERDUE", "red", "超法定时限", "timeout"),
        RuleInfo("TIMEOUT.STEP_OVERDUE", "yellow", "环节超时", "timeout"),
        RuleInfo("TIMEOUT.INTAKE_OVERDUE", "yellow", "受理超时", "timeout"),
        RuleInfo("TIMEOUT.SUSPENSION_OVERRUN", "yellow", "特别程序超期", "timeout"),
        RuleInfo("FEE.NO_BASIS", "red", "无依据收费", "fee"),
        RuleInfo("FEE.OVER_STANDARD", "red", "超标准收费", "fee"),
        RuleInfo("FEE.CASH_AT_WINDOW", "red", "窗口收取现金（违反票款分离）", "fee"),
        RuleInfo("FEE.AMOUNT_MISMATCH", "yellow", "实收与应收不符", "fee"),
        RuleInfo("FEE.DUPLICATE", "red", "重复收费", "fee"),
        RuleInfo("FEE.NOT_REFUNDED", "yellow", "应退未退", "fee"),
        RuleInfo("FEE.DELIVERED_UNPAID", "yellow", "未缴费即出证", "fee"),
        RuleInfo("FEE.WAIVER_UNAPPROVED", "red", "减免无审批", "fee"),
        RuleInfo("PROCEDURE.SKIPPED_STEP", "red", "跳环节", "procedure"),
        RuleInfo("PROCEDURE.OUT_OF_ORDER", "yellow", "环节顺序颠倒", "procedure"),
        RuleInfo("PROCEDURE.SAME_OFFICER", "red", "审批未分离（同一人审核并批准）", "procedure"),
        RuleInfo("PROCEDURE.NOT_ACCEPTED", "red", "未受理即办结", "procedure"),
        RuleInfo("PROCEDURE.REPEATED_SUPPLEMENT", "yellow", "多次补正（未一次性告知）", "procedure"),
        RuleInfo("PROCEDURE.ON_THE_SPOT_LATE", "yellow", "即办件未当日办结", "procedure"),
        RuleInfo("PROCEDURE.TOO_FAST", "yellow", "办理过快", "procedure"),
        RuleInfo("PROCEDURE.OFF_HOURS", "yellow", "非工作时间审批", "procedure"),
        RuleInfo("PROCEDURE.AFTER_COMPLETION", "red", "办结后仍有操作", "procedure"),
        RuleInfo("PROCEDURE.BACKDATED", "yellow", "补录（记录时间远晚于发生时间）", "procedure"),
        RuleInfo("QUALITY.BAD_RATING", "yellow", "差评", "quality"),
        RuleInfo("QUALITY.BAD_RATING_UNRESOLVED", "red", "差评未按期整改", "quality"),
        RuleInfo("QUALITY.COMPLAINT_OVERDUE", "red", "投诉超期未办结", "quality"),
    ]
}

FAMILY_NAMES = {"timeout": "超时", "fee": "违规收费", "procedure": "程序异常", "quality": "服务质量"}
SEVERITY_NAMES = {"yellow": "黄牌", "red": "红牌"}
