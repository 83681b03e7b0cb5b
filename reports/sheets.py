"""The export's sheets as tables (headers, value kinds, rows), shared by the xlsx and CSV writers.

One layout for both formats, so a CSV column and the workbook column of the same name always hold
the same figure; the writers only decide how a value of a kind is written (a percentage cell in
xlsx, ``95.24%`` text in CSV). Headers are Chinese: the readers are the efficiency office and the
departments, not programmers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from reports.monthly import DetailKind, DetailRow, MonthlyReport, UnitRow
from reports.scoring import cents
from schemas.events import CHINA_TZ

Kind = Literal["text", "int", "rate", "score", "datetime", "money"]

ATTRIBUTION_TEXT = (
    "办件按其办件事实中的部门、窗口归属；收件数按收件（无收件记录时按受理）时间、受理数按受理时间、"
    "办结数/按时办结/即办件按办结时间计入当月。监察发现按触发时间计入当月（扣分亦然）；超承诺/超法定时限"
    "按超时发现的触发月份计件（每件每类只计一次：月末仍未办结的与之后逾期办结的同样计入期限届满之月），"
    "逾期办结之月只体现在按时办结率中。评价、投诉、不予受理、补正告知按发生时间计入当月；差评整改与投诉办理"
    "是否按期，以导出时已有的全部数据判断，期限未到的计为“期限未到”，不计入整改率/办结率。"
)
TIE_BREAK_TEXT = (
    "总分高者在前；同分时依次比较：扣分合计少者在前、红牌少者在前、按时办结率高者在前（无办结者居后）、"
    "办结数多者在前，最后按部门名称、窗口名称的字符编码顺序，名次唯一且每次相同。"
)


@dataclass(frozen=True)
class Column:
    header: str
    kind: Kind = "text"


@dataclass
class Sheet:
    key: str  # CSV file stem (ASCII)
    title: str  # sheet name (Chinese, ≤ 31 characters)
    columns: list[Column]
    rows: list[list[Any]]
    freeze: str = "A2"  # first scrolling cell: header row (and leading name columns) stay in view
    styles: list[str] = field(default_factory=list)  # per row: "best" | "worst" | "total" | ""


# ------------------------------------------------------------------------------------ formatting


def as_text(value: Any, kind: Kind) -> str:
    """A value as CSV text (and for measuring column widths): China time, percentages to 0.01 %."""
    if value is None:
        return ""
    if kind == "rate" and isinstance(value, Fraction):
        return f"{cents(value * 100)}%"
    if kind in ("score", "money") and isinstance(value, Decimal):
        return f"{value.quantize(Decimal('0.01'))}"
    if isinstance(value, datetime):
        return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def display_width(text: str) -> int:
    """Columns a text takes in Excel: CJK characters count two. (UTF-8 length is 3 for a CJK character
    and 1 for ASCII, so (bytes + characters) / 2 gives 2 and 1 without a per-character loop.)"""
    if text.isascii():
        return len(text)
    return (len(text.encode("utf-8")) + len(text)) // 2


# ---------------------------------------------------------------------------------------- sheets


def _month_cn(report: MonthlyReport) -> str:
    y, m = report.month.split("-")
    return f"{int(y)}年{int(m)}月"


def cover_sheet(report: MonthlyReport) -> Sheet:
    cfg = report.scoring
    ranked = [w for w in report.windows if w.rank is not None]
    last = report.end.astimezone(CHINA_TZ)
    rows: list[list[Any]] = [
        ["报表", f"政务服务月度考核（电子监察）—— {_month_cn(report)}"],
        ["考核月份", report.month],
        ["统计区间", f"{report.start:%Y-%m-%d %H:%M} 至 {last:%Y-%m-%d %H:%M}（北京时间，含起不含止）"],
        ["行政区划", report.region or "全部"],
        ["事项目录版本", "、".join(report.catalog_versions) or "（数据中未记录）"],
        ["评分办法", f"{cfg.name}（版本 {cfg.version}）"],
        ["评分配置 SHA-256", cfg.sha256],
        ["监察运行", report.run_id],
        ["数据来源", report.source or "（未说明）"],
        ["数据 SHA-256", report.data_sha256],
        ["计算所用数据", f"办件事实 {report.input_rows['case_facts']} 行，监察发现 {report.input_rows['findings']} 行，"
                       f"办件事件 {report.input_rows['events']} 行"],
        ["生成时间", f"{report.generated_at.astimezone(CHINA_TZ):%Y-%m-%d %H:%M:%S}（北京时间）"],
        ["生成人", report.generated_by or "（未说明）"],
        ["窗口数", f"{len(report.windows)} 个（参与排名 {len(ranked)} 个）"],
        ["部门数", f"{len(report.departments)} 个"],
        ["三优窗口", "；".join(f"第{w.rank}名 {w.label}（{w.score}分）" for w in report.best) or "（无）"],
        ["三差窗口", "；".join(f"第{w.rank}名 {w.label}（{w.score}分）" for w in report.worst) or "（无）"],
        ["归属规则", ATTRIBUTION_TEXT],
        ["同分排序", TIE_BREAK_TEXT],
        ["三优三差", f"参与排名的窗口中前 {cfg.best_worst} 名为三优、后 {cfg.best_worst} 名为三差；"
                   f"参与排名窗口不足 {2 * cfg.best_worst} 个时各取半数（向下取整）。"],
        ["明细说明", "每一项扣分均在明细表中列出对应的监察发现与办件；扣分为 0 的发现（如承诺时限预警、差评本身）"
                   "只计数不列明细。影响按时办结率、即办件率、满意率的办件与评价也逐条列出，供部门核对与申诉。"],
    ]
    rows += [["数据问题", p] for p in report.problems]
    return Sheet("01-cover", "封面", [Column("项目"), Column("内容")], rows, freeze="A2")


def _figure_columns() -> list[tuple[Column, Callable[[UnitRow], Any]]]:
    def fig(name: str) -> Callable[[UnitRow], Any]:
        return lambda r: getattr(r.figures, name)

    def rt(key: str) -> Callable[[UnitRow], Any]:
        return lambda r: r.rates.get(key)

    return [
        (Column("涉及办件数", "int"), fig("handled")),
        (Column("收件数", "int"), fig("received")),
        (Column("受理数", "int"), fig("accepted")),
        (Column("办结数", "int"), fig("completed")),
        (Column("按时办结数", "int"), fig("completed_on_time")),
        (Column("按时办结率", "rate"), rt("on_time_rate")),
        (Column("即办件办结数", "int"), fig("on_the_spot_completed")),
        (Column("即办件当日办结数", "int"), fig("on_the_spot_same_day")),
        (Column("即办件率", "rate"), rt("on_the_spot_rate")),
        (Column("超承诺时限件数", "int"), fig("overdue_promised")),
        (Column("超法定时限件数", "int"), fig("overdue_statutory")),
        (Column("不予受理数", "int"), fig("intake_rejections")),
        (Column("补正告知数", "int"), fig("supplements")),
        (Column("超时类发现数", "int"), fig("timeout_findings")),
        (Column("收费异常数", "int"), fig("fee_findings")),
        (Column("程序异常数", "int"), fig("procedure_findings")),
        (Column("服务质量发现数", "int"), fig("quality_findings")),
        (Column("红牌数", "int"), fig("red_findings")),
        (Column("评价数", "int"), fig("ratings")),
        (Column("满意评价数", "int"), fig("ratings_good")),
        (Column("满意率", "rate"), rt("satisfaction_rate")),
        (Column("差评数", "int"), fig("bad_ratings")),
        (Column("差评按期整改数", "int"), fig("bad_ratings_fixed")),
        (Column("差评逾期未整改数", "int"), fig("bad_ratings_overdue")),
        (Column("差评整改期限未到数", "int"), fig("bad_ratings_pending")),
        (Column("差评按期整改率", "rate"), rt("bad_rating_fix_rate")),
        (Column("投诉数", "int"), fig("complaints")),
        (Column("投诉按期办结数", "int"), fig("complaints_fixed")),
        (Column("投诉超期数", "int"), fig("complaints_overdue")),
        (Column("投诉办理期限未到数", "int"), fig("complaints_pending")),
        (Column("投诉按期办结率", "rate"), rt("complaint_fix_rate")),
    ]


def _score_columns(report: MonthlyReport) -> list[tuple[Column, Callable[[UnitRow], Any]]]:
    cfg = report.scoring
    cols: list[tuple[Column, Callable[[UnitRow], Any]]] = [
        (Column("总分", "score"), lambda r: r.score),
        (Column("等级", "text"), lambda r: r.grade),
    ]
    for ind in cfg.indicators:
        if ind.weight > 0:
            cols.append((Column(f"{ind.name}得分（{ind.weight}分）", "score"),
                         lambda r, k=ind.key: r.indicator_scores[k]))
    for fam in cfg.families:
        cols.append((Column(f"{fam.name}扣分", "score"), lambda r, k=fam.key: r.deductions[k]))
    cols.append((Column("扣分合计", "score"), lambda r: r.deduction_total))
    return cols


def _cap_note(report: MonthlyReport, r: UnitRow) -> str:
    notes = [r.note] if r.note else []
    for fam in report.scoring.families:
        raw, capped = r.deductions_raw[fam.key], r.deductions[fam.key]
        if raw > capped:
            notes.append(f"{fam.name}扣分 {raw} 分，封顶 {capped} 分")
    return "；".join(notes)


def windows_sheet(report: MonthlyReport) -> Sheet:
    head = [(Column("排名", "int"), lambda r: r.rank), (Column("三优三差"), lambda r: r.mark),
            (Column("部门"), lambda r: r.department), (Column("窗口"), lambda r: r.window)]
    cols = head + _score_columns(report) + _figure_columns()
    rows = [[get(r) for _, get in cols] + [_cap_note(report, r)] for r in report.windows]
    styles = ["best" if r.mark == "三优" else "worst" if r.mark == "三差" else "" for r in report.windows]
    return Sheet("02-windows", "窗口排名", [c for c, _ in cols] + [Column("备注")], rows, freeze="E2",
                 styles=styles)


def departments_sheet(report: MonthlyReport) -> Sheet:
    head = [(Column("排名", "int"), lambda r: r.rank), (Column("部门"), lambda r: r.department),
            (Column("窗口数", "int"), lambda r: r.windows)]
    cols = head + _score_columns(report) + _figure_columns()
    rows = [[get(r) for _, get in cols] + [_cap_note(report, r)] for r in report.departments]
    styles = [""] * len(rows)
    t = report.total
    total = [get(t) for _, get in cols] + ["全部窗口合计：只列数量与比率，不计分、不排名"]
    n_head = len(head)
    n_score = len(_score_columns(report))
    for i in range(n_head, n_head + n_score):
        total[i] = None
    total[0], total[1] = None, "合计"
    rows.append(total)
    styles.append("total")
    return Sheet("03-departments", "部门排名", [c for c, _ in cols] + [Column("备注")], rows, freeze="C2",
                 styles=styles)


_DETAIL_COLUMNS: dict[DetailKind, list[tuple[Column, Callable[[DetailRow], Any]]]] = {}


def _dc(header: str, kind: Kind, attr: str) -> tuple[Column, Callable[[DetailRow], Any]]:
    return Column(header, kind), lambda d: getattr(d, attr)


_LEAD = [_dc("类别", "text", "category"), _dc("部门", "text", "department"), _dc("窗口", "text", "window"),
         _dc("办件编号", "text", "case_id"), _dc("事项编码", "text", "item_code"), _dc("事项名称", "text", "item_name")]
_RULE = [_dc("规则编码", "text", "rule"), _dc("规则名称", "text", "rule_name"), _dc("等级", "text", "severity")]
_TAIL = [_dc("扣分", "score", "points"), _dc("说明", "text", "message"), _dc("发现编号", "text", "finding_id")]

_DETAIL_COLUMNS["overdue"] = _LEAD + [
    _dc("事项类型", "text", "item_kind"), _dc("受理时间", "datetime", "accepted_at"),
    _dc("承诺办结期限", "datetime", "promised_due_at"), _dc("法定办结期限", "datetime", "statutory_due_at"),
    _dc("办结时间", "datetime", "completed_at"), _dc("当前状态", "text", "status"),
    _dc("触发/办结时间", "datetime", "at")] + _RULE + _TAIL
_DETAIL_COLUMNS["fee"] = _LEAD + [
    _dc("受理时间", "datetime", "accepted_at"), _dc("办结时间", "datetime", "completed_at"),
    _dc("当前状态", "text", "status"), _dc("应收金额（元）", "money", "fee_assessed"),
    _dc("实收金额（元）", "money", "fee_paid"), _dc("触发时间", "datetime", "at")] + _RULE + _TAIL + [
    _dc("触发事件编号", "text", "event_id")]
_DETAIL_COLUMNS["procedure"] = _LEAD + [
    _dc("事项类型", "text", "item_kind"), _dc("受理时间", "datetime", "accepted_at"),
    _dc("办结时间", "datetime", "completed_at"), _dc("当前状态", "text", "status"),
    _dc("触发时间", "datetime", "at")] + _RULE + _TAIL + [_dc("触发事件编号", "text", "event_id")]
_DETAIL_COLUMNS["rating"] = _LEAD + [
    _dc("评价/触发时间", "datetime", "at"), _dc("评价等级", "int", "level"), _dc("整改情况", "text", "follow_up"),
    _dc("整改时间", "datetime", "resolved_at")] + _RULE + _TAIL + [_dc("评价事件编号", "text", "event_id")]
_DETAIL_COLUMNS["complaint"] = _LEAD + [
    _dc("投诉/触发时间", "datetime", "at"), _dc("投诉编号", "text", "complaint_id"), _dc("办理情况", "text", "follow_up"),
    _dc("办结时间", "datetime", "resolved_at")] + _RULE + _TAIL + [_dc("投诉事件编号", "text", "event_id")]

DETAIL_SHEETS: dict[DetailKind, tuple[str, str]] = {
    "overdue": ("04-overdue", "超时明细"),
    "fee": ("05-fees", "收费明细"),
    "procedure": ("06-procedure", "程序明细"),
    "rating": ("07-ratings", "评价明细"),
    "complaint": ("08-complaints", "投诉明细"),
}


def detail_sheet(report: MonthlyReport, kind: DetailKind) -> Sheet:
    cols = _DETAIL_COLUMNS[kind]
    key, title = DETAIL_SHEETS[kind]
    rows = [[get(d) for _, get in cols] for d in report.details[kind]]
    return Sheet(key, title, [c for c, _ in cols], rows, freeze="E2")


def scoring_sheet(report: MonthlyReport) -> Sheet:
    cfg = report.scoring
    rows: list[list[Any]] = []
    for ind in cfg.indicators:
        rows.append(["指标", ind.name, ind.key, f"{ind.weight}",
                     f"达到 {cents(ind.full_at * 100)}% 得满分，不高于 {cents(ind.zero_at * 100)}% 得 0 分，其间按比例；"
                     "无此项业务得满分"])
    from rules.registry import RULES, SEVERITY_NAMES

    for fam in cfg.families:
        rows.append(["扣分类别", fam.name, fam.key, f"封顶 {fam.cap}", "本类扣分每月最多扣至封顶分"])
        for code, pts in fam.rules.items():
            info = RULES[code]
            rows.append(["扣分", info.name, code, f"{pts}", f"每条{SEVERITY_NAMES[info.severity]}发现扣 {pts} 分"])
    rows.append(["扣分合计上限", "", "max_total_deduction", f"{cfg.max_total_deduction}", "各类扣分之和的上限；总分不低于 0"])
    for g in cfg.grades:
        rows.append(["等级", g.name, "", f"≥ {g.min}", "按保留两位小数后的总分评定"])
    rows.append(["排名", "参与排名最少办件数", "min_cases", f"{cfg.min_cases}", "本月涉及办件数少于此数的不排名"])
    rows.append(["排名", "三优三差名额", "best_worst", f"{cfg.best_worst}", ""])
    rows.append(["排名", "同分排序", "", "", TIE_BREAK_TEXT])
    rows.append(["评价", "满意等级", "satisfied_min_level", f"{cfg.satisfied_min_level}", "该等级及以上计为满意"])
    rows.append(["评价", "差评等级", "bad_max_level", f"{cfg.bad_max_level}", "该等级及以下计为差评"])
    return Sheet("09-scoring", "评分办法", [Column("类别"), Column("项目"), Column("编码"), Column("分值"),
                                             Column("说明")], rows)


def build_sheets(report: MonthlyReport) -> list[Sheet]:
    """All sheets in workbook order: cover, rankings, the five evidence sheets, the scoring rules."""
    return ([cover_sheet(report), windows_sheet(report), departments_sheet(report)]
            + [detail_sheet(report, k) for k in DETAIL_SHEETS] + [scoring_sheet(report)])
