"""Monthly accountability export (月度考核): a month built by hand, exported, read back and checked.

Every expected number below was worked out by hand from the cases listed in ``hand_month`` and the
scoring in ``SCORING`` (not taken from the code under test), so a change in attribution, scoring,
ranking or layout shows up here as a wrong figure.
"""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from reports.monthly import ReportInputError, build, ranking_rows, write_csv, write_xlsx
from reports.scoring import ScoringConfigError, load_scoring, parse_scoring
from rules.registry import RULES
from schemas.events import CHINA_TZ

MONTH = "2026-10"
GEN_AT = datetime(2026, 11, 5, 9, 30, tzinfo=CHINA_TZ)

POINTS = {"TIMEOUT.PROMISED_OVERDUE": 2, "TIMEOUT.STATUTORY_OVERDUE": 5, "FEE.NO_BASIS": 10,
          "FEE.CASH_AT_WINDOW": 5, "PROCEDURE.SKIPPED_STEP": 3, "PROCEDURE.ON_THE_SPOT_LATE": 0.5,
          "PROCEDURE.AFTER_COMPLETION": 3, "QUALITY.BAD_RATING_UNRESOLVED": 2, "QUALITY.COMPLAINT_OVERDUE": 3}
CAPS = {"timeout": 20, "fee": 12, "procedure": 20, "quality": 10}


def scoring_doc() -> dict[str, Any]:
    deductions: dict[str, Any] = {fam: {"name": fam, "cap": cap, "rules": {}} for fam, cap in CAPS.items()}
    for code, info in RULES.items():
        deductions[info.family]["rules"][code] = POINTS.get(code, 0)
    return {
        "version": "test-1", "name": "测试评分办法",
        "indicators": {"on_time_rate": {"name": "按时办结率", "weight": 50, "full_at": 1, "zero_at": 0.5},
                       "on_the_spot_rate": {"name": "即办件率", "weight": 20, "full_at": 1, "zero_at": 0.5},
                       "satisfaction_rate": {"name": "满意率", "weight": 30, "full_at": 1, "zero_at": 0.5}},
        "deductions": deductions, "max_total_deduction": 60,
        "grades": [{"name": "优秀", "min": 90}, {"name": "良好", "min": 80}, {"name": "合格", "min": 60},
                   {"name": "不合格", "min": 0}],
        "ranking": {"min_cases": 2, "best_worst": 3},
        "ratings": {"satisfied_min_level": 4, "bad_max_level": 2},
    }


SCORING = parse_scoring(scoring_doc())


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ)


WINDOWS = {"A": ("市场监管局", "企业登记窗口"), "B": ("市场监管局", "个体登记窗口"), "C": ("公安局", "户政窗口"),
           "D": ("公安局", "出入境窗口"), "E": ("税务局", "办税窗口"), "F": ("民政局", "婚姻登记窗口"),
           "H": ("民政局", "社会救助窗口"), "G": ("人社局", "社保窗口")}


def fact(cid: str, win: str | None, kind: str = "promised", sub: str | None = None, acc: str | None = None,
         due: str | None = None, done: str | None = None, on_time: bool | None = None, status: str | None = None,
         region: str = "330102", version: int = 5) -> dict[str, Any]:
    dept, window = WINDOWS[win] if win else (None, None)
    return {
        "case_id": cid, "version": version, "status": status or ("completed" if done else "accepted"),
        "item_code": "SPOT-1" if kind == "on_the_spot" else "PROM-1",
        "item_name": "个体工商户登记" if kind == "on_the_spot" else "食品经营许可", "item_kind": kind,
        "department": dept, "window": window, "region_code": region, "catalog_version": "2026.10",
        "applicant_name": "张三", "applicant_id_number": "110101199003071234", "applicant_phone": "13812345678",
        "submitted_at": t(sub) if sub else None, "accepted_at": t(acc) if acc else None,
        "promised_due_at": t(due) if due else None, "statutory_due_at": None,
        "completed_at": t(done) if done else None, "on_time": on_time,
        "fee_assessed": Decimal("0"), "fee_paid": Decimal("0"), "last_event_at": t(done or acc or sub or "2026-10-01"),
    }


def finding(cid: str, rule: str, fired: str, occurrence: str | None = None, win: str | None = None,
            message: str | None = None) -> dict[str, Any]:
    dept, window = WINDOWS[win] if win else (None, None)
    return {"finding_id": f"F-{cid}-{rule}-{occurrence or ''}", "case_id": cid, "rule": rule,
            "severity": RULES[rule].severity, "item_code": None, "department": dept, "window": window,
            "region_code": None, "fired_at": t(fired), "deadline": None, "event_id": None,
            "occurrence": occurrence or rule, "message": message or f"{RULES[rule].name}：{cid}",
            "catalog_version": "2026.10", "basis": "测试"}


def event(eid: str, cid: str, typ: str, at: str, level: int | None = None, complaint_id: str | None = None) -> dict[str, Any]:
    return {"event_id": eid, "case_id": cid, "event_type": typ, "occurred_at": t(at), "level": level,
            "complaint_id": complaint_id}


def spot(cid: str, win: str, day: str, late: bool = False, **kw: Any) -> dict[str, Any]:
    done = f"2026-10-{int(day) + 1:02d} 10:00" if late else f"2026-10-{day} 10:00"
    return fact(cid, win, "on_the_spot", sub=f"2026-10-{day} 09:00", acc=f"2026-10-{day} 09:05",
                due=f"2026-10-{int(day) + 1:02d} 00:00", done=done, on_time=not late, **kw)


def prom(cid: str, win: str, acc: str, done: str | None, due: str, on_time: bool | None = None,
         **kw: Any) -> dict[str, Any]:
    return fact(cid, win, "promised", sub=acc, acc=acc, due=due, done=done,
                on_time=(on_time if on_time is not None else True) if done else None, **kw)


def hand_month() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    facts = [
        # A 市场监管局/企业登记窗口: 2 of 3 completions on time; A3 received in September; A4 still open.
        prom("A1", "A", "2026-10-08 09:10", "2026-10-09 10:00", "2026-10-11 00:00"),
        prom("A2", "A", "2026-10-12 09:10", "2026-10-20 10:00", "2026-10-16 00:00", on_time=False),
        prom("A3", "A", "2026-09-28 09:10", "2026-10-05 10:00", "2026-10-09 00:00"),
        prom("A4", "A", "2026-10-30 09:10", None, "2026-11-04 00:00"),
        # B 市场监管局/个体登记窗口: five 即办件, B5 finished the next day.
        spot("B1", "B", "05"), spot("B2", "B", "06"), spot("B3", "B", "07"), spot("B4", "B", "08"),
        spot("B5", "B", "10", late=True),
        # C 公安局/户政窗口: all on time, two fee findings (15 points, capped at 12).
        prom("C1", "C", "2026-10-13 09:00", "2026-10-14 09:00", "2026-10-18 00:00"),
        spot("C2", "C", "14"),
        prom("C3", "C", "2026-10-15 09:00", "2026-10-16 09:00", "2026-10-20 00:00"),
        # D 公安局/出入境窗口: perfect, no ratings. D9 is another region's case.
        prom("D1", "D", "2026-10-13 09:00", "2026-10-14 09:00", "2026-10-18 00:00"),
        prom("D2", "D", "2026-10-15 09:00", "2026-10-16 09:00", "2026-10-20 00:00"),
        spot("D3", "D", "16"),
        prom("D9", "D", "2026-10-15 09:00", "2026-10-16 09:00", "2026-10-20 00:00", region="330105"),
        # E 税务局/办税窗口: perfect with four completions (ties D at 100, ranks first); E5 rejected at intake.
        spot("E1", "E", "19"), spot("E2", "E", "20"), spot("E3", "E", "21"), spot("E4", "E", "22"),
        fact("E5", "E", sub="2026-10-23 09:00", status="rejected"),
        # F 民政局/婚姻登记窗口: F1 accepted in September, still open, statutory deadline passed in October.
        prom("F1", "F", "2026-09-01 09:00", None, "2026-09-20 00:00"),
        prom("F2", "F", "2026-10-09 09:00", "2026-10-12 09:00", "2026-10-15 00:00"),
        prom("F3", "F", "2026-10-15 09:00", "2026-10-16 09:00", "2026-10-20 00:00"),
        prom("F4", "F", "2026-10-28 09:00", "2026-10-29 09:00", "2026-11-02 00:00"),
        # H 民政局/社会救助窗口: a skipped step.
        prom("H1", "H", "2026-10-20 09:00", "2026-10-21 09:00", "2026-10-25 00:00"),
        prom("H2", "H", "2026-10-21 09:00", "2026-10-22 09:00", "2026-10-26 00:00"),
        # G 人社局/社保窗口: one case, below min_cases: listed, not ranked.
        prom("G1", "G", "2026-10-21 09:00", "2026-10-22 09:00", "2026-10-26 00:00"),
        # No department or window recorded.
        prom("X1", None, "2026-10-21 09:00", "2026-10-22 09:00", "2026-10-26 00:00"),
        # November: not this month.
        prom("Z1", "A", "2026-11-02 09:00", "2026-11-03 09:00", "2026-11-06 00:00"),
    ]
    # an older version of A1 that must be replaced by the newer one
    old = dict(facts[0], version=2, status="accepted", completed_at=None, on_time=None)
    facts.append(old)
    findings = [
        finding("A2", "TIMEOUT.PROMISED_OVERDUE", "2026-10-16 00:00", win="A"),
        finding("A2", "TIMEOUT.PROMISED_WARNING", "2026-10-15 00:00", win="A"),  # 0 points: counted only
        finding("A1", "PROCEDURE.AFTER_COMPLETION", "2026-11-02 10:00", win="A"),  # November
        finding("B5", "PROCEDURE.ON_THE_SPOT_LATE", "2026-10-11 00:00", win="B"),
        finding("B3", "QUALITY.BAD_RATING", "2026-10-07 12:00", occurrence="EV-B3", win="B"),
        finding("B4", "QUALITY.BAD_RATING", "2026-10-08 12:00", occurrence="EV-B4", win="B"),
        finding("B4", "QUALITY.BAD_RATING_UNRESOLVED", "2026-11-20 00:00", occurrence="EV-B4", win="B"),
        finding("C1", "FEE.NO_BASIS", "2026-10-13 10:00", occurrence="FEE-1", win="C",
                message="收取无依据费用，申请人张三（身份证110101199003071234）"),
        finding("C1", "FEE.CASH_AT_WINDOW", "2026-10-13 10:05", occurrence="EV-C1-9", win="C"),
        finding("D9", "FEE.NO_BASIS", "2026-10-15 10:00", occurrence="FEE-1", win="D"),
        finding("F1", "TIMEOUT.PROMISED_OVERDUE", "2026-09-20 00:00", win="F"),  # September
        finding("F1", "TIMEOUT.STATUTORY_OVERDUE", "2026-10-09 00:00", win="F"),
        finding("F3", "QUALITY.COMPLAINT_OVERDUE", "2026-10-27 00:00", occurrence="TS-2", win="F"),
        finding("H1", "PROCEDURE.SKIPPED_STEP", "2026-10-21 09:00", win=None),  # unit from the case facts
    ]
    events = [
        event("EV-A1", "A1", "rated", "2026-10-09 11:00", 5),
        event("EV-A3", "A3", "rated", "2026-10-05 11:00", 4),
        event("EV-B1", "B1", "rated", "2026-10-05 11:00", 5),
        event("EV-B2", "B2", "rated", "2026-10-06 11:00", 3),
        event("EV-B3", "B3", "rated", "2026-10-07 12:00", 1),
        event("EV-B3-fix", "B3", "rating_resolved", "2026-10-09 09:00"),
        event("EV-B4", "B4", "rated", "2026-10-08 12:00", 2),
        event("EV-C1", "C1", "rated", "2026-10-14 11:00", 4),
        event("EV-C2", "C2", "rated", "2026-10-14 11:00", 5),
        event("EV-E1", "E1", "rated", "2026-10-19 11:00", 5),
        event("EV-E1-s", "E1", "supplement_requested", "2026-10-19 09:02"),
        event("EV-E5", "E5", "intake_rejected", "2026-10-23 10:00"),
        event("EV-F2", "F2", "complaint_filed", "2026-10-13 09:00", complaint_id="TS-1"),
        event("EV-F2-r", "F2", "complaint_resolved", "2026-10-14 09:00", complaint_id="TS-1"),
        event("EV-F3", "F3", "complaint_filed", "2026-10-20 09:00", complaint_id="TS-2"),
        event("EV-F4", "F4", "complaint_filed", "2026-10-30 09:00"),
        event("EV-H1", "H1", "rated", "2026-10-21 11:00", 3),
        event("EV-Z1", "Z1", "rated", "2026-11-03 11:00", 1),  # November
        event("EV-A1-x", "A1", "step_completed", "2026-10-09 09:00"),  # not a kind the report reads
    ]
    return facts, findings, events


def make_report(region: str | None = "330102", shuffle: int | None = None, **kw: Any):
    facts, findings, events = hand_month()
    if shuffle is not None:
        rng = random.Random(shuffle)
        for rows in (facts, findings, events):
            rng.shuffle(rows)
    return build(facts, findings, events, month=MONTH, region=region, config=SCORING, generated_at=GEN_AT,
                 generated_by="效能办 李四", source="手工构造的测试数据", **kw)


# --------------------------------------------------------------------------------- expectations
# window -> (rank, mark, score, grade, figures...) worked out by hand; see the comments in hand_month.
# on-time score = 50 × (rate − 0.5) / 0.5; 即办件 = 20 × (rate − 0.5) / 0.5; 满意 = 30 × (rate − 0.5) / 0.5.
EXPECTED_WINDOWS = {
    # A: on time 2/3 → 16.67; no 即办件 → 20; satisfied 2/2 → 30; timeout −2 → 64.67
    "A": dict(rank=6, mark="三差", score="64.67", grade="合格", handled=4, received=3, accepted=3, completed=3,
              completed_on_time=2, on_time_rate=Fraction(2, 3), on_the_spot_completed=0, on_the_spot_same_day=0,
              on_the_spot_rate=None, overdue_promised=1, overdue_statutory=0, timeout_findings=2, fee_findings=0,
              procedure_findings=0, quality_findings=0, red_findings=1, ratings=2, ratings_good=2,
              satisfaction_rate=Fraction(1), bad_ratings=0, complaints=0, intake_rejections=0, supplements=0,
              ind=("16.67", "20.00", "30.00"), ded=("2.00", "0.00", "0.00", "0.00"), ded_total="2.00"),
    # B: on time 4/5 → 30; 即办件 4/5 → 12; satisfied 1/4 → 0; procedure −0.5 → 41.50
    "B": dict(rank=7, mark="三差", score="41.50", grade="不合格", handled=5, received=5, accepted=5, completed=5,
              completed_on_time=4, on_time_rate=Fraction(4, 5), on_the_spot_completed=5, on_the_spot_same_day=4,
              on_the_spot_rate=Fraction(4, 5), overdue_promised=0, overdue_statutory=0, timeout_findings=0,
              fee_findings=0, procedure_findings=1, quality_findings=2, red_findings=0, ratings=4, ratings_good=1,
              satisfaction_rate=Fraction(1, 4), bad_ratings=2, bad_ratings_fixed=1, bad_ratings_overdue=1,
              bad_ratings_pending=0, complaints=0, intake_rejections=0, supplements=0,
              ind=("30.00", "12.00", "0.00"), ded=("0.00", "0.00", "0.50", "0.00"), ded_total="0.50"),
    # C: all rates 100 %; fee 10 + 5 = 15 capped at 12 → 88.00
    "C": dict(rank=4, mark="", score="88.00", grade="良好", handled=3, received=3, accepted=3, completed=3,
              completed_on_time=3, on_time_rate=Fraction(1), on_the_spot_completed=1, on_the_spot_same_day=1,
              on_the_spot_rate=Fraction(1), fee_findings=2, red_findings=2, ratings=2, ratings_good=2,
              satisfaction_rate=Fraction(1), ind=("50.00", "20.00", "30.00"), ded=("0.00", "12.00", "0.00", "0.00"),
              ded_total="12.00"),
    # D: perfect, 3 completions (D9 is another region's)
    "D": dict(rank=2, mark="三优", score="100.00", grade="优秀", handled=3, received=3, completed=3,
              completed_on_time=3, on_the_spot_completed=1, ratings=0, satisfaction_rate=None, fee_findings=0,
              ind=("50.00", "20.00", "30.00"), ded_total="0.00"),
    # E: perfect, 4 completions: ties D on score, deductions, red cards and on-time rate; more completions
    "E": dict(rank=1, mark="三优", score="100.00", grade="优秀", handled=5, received=5, accepted=4, completed=4,
              completed_on_time=4, on_the_spot_completed=4, on_the_spot_same_day=4, ratings=1, ratings_good=1,
              intake_rejections=1, supplements=1, ded_total="0.00"),
    # F: 3/3 on time; statutory overdue of the September case −5; complaint overdue −3 → 92.00
    "F": dict(rank=3, mark="三优", score="92.00", grade="优秀", handled=4, received=3, accepted=3, completed=3,
              completed_on_time=3, overdue_promised=0, overdue_statutory=1, timeout_findings=1, quality_findings=1,
              red_findings=2, complaints=3, complaints_fixed=1, complaints_overdue=1, complaints_pending=1,
              ind=("50.00", "20.00", "30.00"), ded=("5.00", "0.00", "0.00", "3.00"), ded_total="8.00"),
    # H: satisfied 0/1 → 0; skipped step −3 → 67.00
    "H": dict(rank=5, mark="三差", score="67.00", grade="合格", handled=2, completed=2, ratings=1, ratings_good=0,
              satisfaction_rate=Fraction(0), procedure_findings=1, red_findings=1,
              ind=("50.00", "20.00", "0.00"), ded=("0.00", "0.00", "3.00", "0.00"), ded_total="3.00"),
    # G: one case, not ranked
    "G": dict(rank=None, mark="", score="100.00", grade="优秀", handled=1, completed=1),
}
EXPECTED_DEPARTMENTS = {
    # 市场监管局 = A + B: on time 6/8 → 25; 即办件 4/5 → 12; satisfied 3/6 → 0; −2.5 → 34.50
    "市场监管局": dict(rank=4, score="34.50", grade="不合格", completed=8, completed_on_time=6, ratings=6,
                   ratings_good=3, windows=2),
    # 公安局 = C + D: all 100 %; fee 15 capped at 12 → 88.00
    "公安局": dict(rank=2, score="88.00", grade="良好", completed=6, completed_on_time=6, windows=2),
    "税务局": dict(rank=1, score="100.00", grade="优秀", completed=4, windows=1),
    # 民政局 = F + H: 5/5 on time; satisfied 0/1 → 0; timeout 5 + procedure 3 + quality 3 → 59.00
    "民政局": dict(rank=3, score="59.00", grade="不合格", completed=5, ratings=1, windows=2),
    "人社局": dict(rank=None, score="100.00", grade="优秀", completed=1, windows=1),
}


# ---------------------------------------------------------------------------------- reading back

def read_sheet(ws: Any) -> tuple[list[str], list[dict[str, Any]]]:
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    return header, [dict(zip(header, r, strict=True)) for r in rows[1:]]


@pytest.fixture(scope="module")
def workbook(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("xlsx") / "monthly.xlsx"
    write_xlsx(make_report(), path)
    return openpyxl.load_workbook(path)


FIG_HEADERS = {
    "handled": "涉及办件数", "received": "收件数", "accepted": "受理数", "completed": "办结数",
    "completed_on_time": "按时办结数", "on_time_rate": "按时办结率", "on_the_spot_completed": "即办件办结数",
    "on_the_spot_same_day": "即办件当日办结数", "on_the_spot_rate": "即办件率", "overdue_promised": "超承诺时限件数",
    "overdue_statutory": "超法定时限件数", "intake_rejections": "不予受理数", "supplements": "补正告知数",
    "timeout_findings": "超时类发现数", "fee_findings": "收费异常数", "procedure_findings": "程序异常数",
    "quality_findings": "服务质量发现数", "red_findings": "红牌数", "ratings": "评价数", "ratings_good": "满意评价数",
    "satisfaction_rate": "满意率", "bad_ratings": "差评数", "bad_ratings_fixed": "差评按期整改数",
    "bad_ratings_overdue": "差评逾期未整改数", "bad_ratings_pending": "差评整改期限未到数", "complaints": "投诉数",
    "complaints_fixed": "投诉按期办结数", "complaints_overdue": "投诉超期数", "complaints_pending": "投诉办理期限未到数",
    "windows": "窗口数",
}
IND_HEADERS = ("按时办结率得分（50分）", "即办件率得分（20分）", "满意率得分（30分）")
DED_HEADERS = ("timeout扣分", "fee扣分", "procedure扣分", "quality扣分")


def check_row(row: dict[str, Any], exp: dict[str, Any], where: str) -> None:
    assert row["总分"] == float(Decimal(exp["score"])), where
    assert row["等级"] == exp["grade"], where
    assert row["排名"] == exp["rank"], where
    if "mark" in exp:
        assert (row["三优三差"] or "") == exp["mark"], where
    for key, value in exp.items():
        if key in FIG_HEADERS:
            cell = row[FIG_HEADERS[key]]
            want = None if value is None else float(value) if isinstance(value, Fraction) else value
            assert cell == want, f"{where} {FIG_HEADERS[key]}: {cell!r} != {want!r}"
    if "ind" in exp:
        assert tuple(row[h] for h in IND_HEADERS) == tuple(float(Decimal(v)) for v in exp["ind"]), where
    if "ded" in exp:
        assert tuple(row[h] for h in DED_HEADERS) == tuple(float(Decimal(v)) for v in exp["ded"]), where
    if "ded_total" in exp:
        assert row["扣分合计"] == float(Decimal(exp["ded_total"])), where


def test_every_window_figure_score_grade_and_mark(workbook: Any) -> None:
    header, rows = read_sheet(workbook["窗口排名"])
    by_key = {(r["部门"], r["窗口"]): r for r in rows}
    for key, exp in EXPECTED_WINDOWS.items():
        check_row(by_key[WINDOWS[key]], exp, key)
    unknown = by_key[("（未登记部门）", "（未登记窗口）")]
    assert unknown["排名"] is None and "未登记" in unknown["备注"]
    assert "少于 2 件" in by_key[WINDOWS["G"]]["备注"]
    # ranked windows first, in rank order, then the unranked ones by name
    assert [r["排名"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, None, None]
    assert [(r["部门"], r["窗口"]) for r in rows[:7]] == [WINDOWS[k] for k in "EDFCHAB"]
    assert [r["三优三差"] or "" for r in rows[:7]] == ["三优"] * 3 + [""] + ["三差"] * 3
    assert len(rows) == 9  # Z1 (November) adds no window of its own; D9's region is excluded
    # the cap is explained where it applies
    assert "fee扣分 15.00 分，封顶 12.00 分" in by_key[WINDOWS["C"]]["备注"]


def test_department_ranking_and_total(workbook: Any) -> None:
    _, rows = read_sheet(workbook["部门排名"])
    by = {r["部门"]: r for r in rows}
    for dept, exp in EXPECTED_DEPARTMENTS.items():
        check_row({**by[dept], "三优三差": ""}, exp, dept)
    total = by["合计"]
    assert total["排名"] is None and total["总分"] is None
    # all windows of the region together: 25 completions (A3 counts, Z1 and D9 do not)
    assert total["办结数"] == 3 + 5 + 3 + 3 + 4 + 3 + 2 + 1 + 1
    assert total["按时办结数"] == 2 + 4 + 3 + 3 + 4 + 3 + 2 + 1 + 1
    assert total["按时办结率"] == pytest.approx(23 / 25)
    assert total["评价数"] == 2 + 4 + 2 + 1 + 1
    assert total["投诉数"] == 3
    assert [r["部门"] for r in rows] == ["税务局", "公安局", "民政局", "市场监管局", "人社局", "（未登记部门）", "合计"]


def test_evidence_sheets_list_every_deduction(workbook: Any) -> None:
    _, overdue = read_sheet(workbook["超时明细"])
    # sorted by department, window (Unicode order: 个体 before 企业), then time
    assert [(r["办件编号"], r["规则编码"] or "", r["扣分"]) for r in overdue] == [
        ("B5", "", None),  # 即办件 finished the next day: lowers 即办件率 and the on-time rate
        ("A2", "TIMEOUT.PROMISED_OVERDUE", 2.0),  # fired 10-16
        ("A2", "", None),  # completed late on 10-20: lowers the on-time rate
        ("F1", "TIMEOUT.STATUTORY_OVERDUE", 5.0),
    ]
    f1 = overdue[3]
    assert f1["当前状态"] == "办理中" and f1["办结时间"] is None
    assert f1["触发/办结时间"] == datetime(2026, 10, 9, 0, 0)
    assert f1["受理时间"] == datetime(2026, 9, 1, 9, 0)
    assert f1["等级"] == "红牌" and f1["规则名称"] == "超法定时限"

    _, fees = read_sheet(workbook["收费明细"])
    assert [(r["窗口"], r["办件编号"], r["规则编码"], r["扣分"]) for r in fees] == [
        ("户政窗口", "C1", "FEE.NO_BASIS", 10.0), ("户政窗口", "C1", "FEE.CASH_AT_WINDOW", 5.0)]
    # personal data in a message is masked in the export
    assert "110101199003071234" not in fees[0]["说明"] and "110101********1234" in fees[0]["说明"]
    assert "张三" not in fees[0]["说明"]

    _, proc = read_sheet(workbook["程序明细"])
    assert [(r["窗口"], r["办件编号"], r["规则编码"], r["扣分"]) for r in proc] == [
        ("个体登记窗口", "B5", "PROCEDURE.ON_THE_SPOT_LATE", 0.5), ("社会救助窗口", "H1", "PROCEDURE.SKIPPED_STEP", 3.0)]

    _, ratings = read_sheet(workbook["评价明细"])
    assert [(r["办件编号"], r["评价等级"], r["整改情况"] or "") for r in ratings] == [
        ("B2", 3, ""), ("B3", 1, "按期整改"), ("B4", 2, "逾期未整改"), ("H1", 3, "")]
    assert ratings[1]["整改时间"] == datetime(2026, 10, 9, 9, 0)

    _, complaints = read_sheet(workbook["投诉明细"])
    assert [(r["办件编号"], r["投诉编号"], r["办理情况"] or "", r["规则编码"] or "", r["扣分"]) for r in complaints] == [
        ("F2", "TS-1", "按期办结", "", None), ("F3", "TS-2", "超期未办结", "", None),
        ("F3", None, "", "QUALITY.COMPLAINT_OVERDUE", 3.0), ("F4", None, "办理期限未到", "", None)]

    # every deduction on the ranking sheet is the sum of its evidence lines (before caps)
    _, windows = read_sheet(workbook["窗口排名"])
    evidence: dict[str, float] = {}
    for sheet in ("超时明细", "收费明细", "程序明细", "评价明细", "投诉明细"):
        for r in read_sheet(workbook[sheet])[1]:
            evidence[r["窗口"]] = evidence.get(r["窗口"], 0) + (r["扣分"] or 0)
    for w in windows:
        raw = sum(w[h] for h in DED_HEADERS)
        if "封顶" not in (w["备注"] or ""):
            assert raw == evidence.get(w["窗口"], 0), w["窗口"]


def test_cover_sheet(workbook: Any) -> None:
    _, rows = read_sheet(workbook["封面"])
    cover = {r["项目"]: r["内容"] for r in rows}
    report = make_report()
    assert cover["考核月份"] == "2026-10"
    assert cover["行政区划"] == "330102"
    assert cover["事项目录版本"] == "2026.10"
    assert cover["评分办法"] == "测试评分办法（版本 test-1）"
    assert cover["评分配置 SHA-256"] == SCORING.sha256
    assert cover["生成人"] == "效能办 李四"
    assert cover["生成时间"] == "2026-11-05 09:30:00（北京时间）"
    assert cover["数据 SHA-256"] == report.data_sha256 and len(report.data_sha256) == 64
    assert cover["三优窗口"].startswith("第1名 税务局 / 办税窗口（100.00分）")
    assert "第7名 市场监管局 / 个体登记窗口（41.50分）" in cover["三差窗口"]
    assert "统计区间" in cover and "归属规则" in cover and "同分排序" in cover


def test_sheet_layout(workbook: Any) -> None:
    assert workbook.sheetnames == ["封面", "窗口排名", "部门排名", "超时明细", "收费明细", "程序明细", "评价明细",
                                   "投诉明细", "评分办法"]
    ws = workbook["窗口排名"]
    assert ws.freeze_panes == "E2"
    header = [c.value for c in ws[1]]
    rate_col = header.index("按时办结率") + 1
    assert ws.cell(row=2, column=rate_col).number_format == "0.00%"
    assert ws.cell(row=2, column=header.index("总分") + 1).number_format == "0.00"
    assert ws.column_dimensions["C"].width >= 10
    assert ws[1][0].font.bold
    for name in ("超时明细", "收费明细", "程序明细", "评价明细", "投诉明细"):
        assert workbook[name].freeze_panes == "E2"
    d = workbook["超时明细"]
    hdr = [c.value for c in d[1]]
    accepted = d.cell(row=2, column=hdr.index("受理时间") + 1)
    assert accepted.is_date and accepted.number_format == "yyyy-mm-dd h:mm:ss"


def test_ranking_rows_for_printing() -> None:
    rows = ranking_rows(make_report())
    assert [(r["rank"], r["mark"], r["window"], str(r["score"]), r["grade"]) for r in rows[:7]] == [
        (1, "三优", "办税窗口", "100.00", "优秀"), (2, "三优", "出入境窗口", "100.00", "优秀"),
        (3, "三优", "婚姻登记窗口", "92.00", "优秀"), (4, "", "户政窗口", "88.00", "良好"),
        (5, "三差", "社会救助窗口", "67.00", "合格"), (6, "三差", "企业登记窗口", "64.67", "合格"),
        (7, "三差", "个体登记窗口", "41.50", "不合格")]
    depts = ranking_rows(make_report(), "department")
    assert [(d["rank"], d["department"]) for d in depts[:4]] == [(1, "税务局"), (2, "公安局"), (3, "民政局"),
                                                                  (4, "市场监管局")]


# --------------------------------------------------------------------------- determinism, hash


def test_same_data_gives_byte_identical_csv_and_same_xlsx_cells(tmp_path: Path) -> None:
    a, b = make_report(shuffle=1), make_report(shuffle=2)
    assert a.data_sha256 == b.data_sha256
    write_csv(a, tmp_path / "a")
    write_csv(b, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["01-cover.csv", "02-windows.csv", "03-departments.csv", "04-overdue.csv", "05-fees.csv",
                     "06-procedure.csv", "07-ratings.csv", "08-complaints.csv", "09-scoring.csv"]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    write_csv(a, tmp_path / "a.zip")
    write_csv(b, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    write_xlsx(a, tmp_path / "a.xlsx")
    write_xlsx(b, tmp_path / "b.xlsx")
    wa, wb = openpyxl.load_workbook(tmp_path / "a.xlsx"), openpyxl.load_workbook(tmp_path / "b.xlsx")
    for name in wa.sheetnames:
        assert list(wa[name].iter_rows(values_only=True)) == list(wb[name].iter_rows(values_only=True)), name


def test_csv_is_utf8_with_bom_and_matches_the_workbook(tmp_path: Path) -> None:
    report = make_report()
    write_csv(report, tmp_path / "csv")
    raw = (tmp_path / "csv" / "02-windows.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    lines = text.split("\r\n")
    assert lines[0].startswith("排名,三优三差,部门,窗口,总分,等级,")
    first = lines[1].split(",")
    header = lines[0].split(",")
    row = dict(zip(header, first, strict=True))
    assert (row["排名"], row["三优三差"], row["窗口"], row["总分"], row["等级"]) == ("1", "三优", "办税窗口", "100.00", "优秀")
    a_line = next(ln for ln in lines if ",企业登记窗口," in ln)
    a = dict(zip(header, a_line.split(","), strict=True))
    assert a["按时办结率"] == "66.67%" and a["即办件率"] == "" and a["总分"] == "64.67"
    overdue = (tmp_path / "csv" / "04-overdue.csv").read_bytes().decode("utf-8-sig")
    assert "2026-10-09 00:00:00" in overdue  # F1's statutory deadline, China time


def test_hash_covers_what_the_month_uses_and_nothing_else() -> None:
    base = make_report()
    facts, findings, events = hand_month()
    # a December case and a finding of another case's December do not change the month
    more = build(facts + [prom("Y1", "A", "2026-12-01 09:00", "2026-12-02 09:00", "2026-12-05 00:00")],
                 findings + [finding("A1", "FEE.DUPLICATE", "2026-12-01 10:00")], events,
                 month=MONTH, region="330102", config=SCORING, generated_at=GEN_AT, generated_by="x")
    assert more.data_sha256 == base.data_sha256
    # a relevant change (one rating level) changes it
    changed = [dict(e, level=4) if e["event_id"] == "EV-B2" else e for e in events]
    other = build(facts, findings, changed, month=MONTH, region="330102", config=SCORING, generated_at=GEN_AT)
    assert other.data_sha256 != base.data_sha256
    # personal data is not part of the input the report reads
    masked = [dict(f, applicant_name="王五") for f in facts]
    same = build(masked, findings, events, month=MONTH, region="330102", config=SCORING, generated_at=GEN_AT)
    assert same.data_sha256 == base.data_sha256
    # 30 cases less D9 (other region) and Z1 (November); 10 findings of the month + B4's later follow-up
    assert base.input_rows == {"case_facts": 28, "findings": 11, "events": 17}


def test_region_filter_and_all_regions() -> None:
    everything = make_report(region=None)
    d = next(w for w in everything.windows if w.window == "出入境窗口")
    assert d.figures.completed == 4 and d.figures.fee_findings == 1
    assert d.score == Decimal("90.00")  # the other region's fee finding costs 10 points


def test_attribution_of_a_case_spanning_months() -> None:
    """A3: received in September, completed in October; F1: accepted in September, overdue (promised) in
    September and (statutory) in October, still open. Each counts once per figure, in its own month."""
    facts, findings, events = hand_month()
    sept = build(facts, findings, events, month="2026-09", region="330102", config=SCORING, generated_at=GEN_AT)
    a = next(w for w in sept.windows if w.window == "企业登记窗口")
    assert (a.figures.received, a.figures.completed) == (1, 0)
    f = next(w for w in sept.windows if w.window == "婚姻登记窗口")
    assert (f.figures.received, f.figures.overdue_promised, f.figures.overdue_statutory) == (1, 1, 0)
    octo = make_report()
    f = next(w for w in octo.windows if w.window == "婚姻登记窗口")
    assert (f.figures.overdue_promised, f.figures.overdue_statutory) == (0, 1)
    nov = build(facts, findings, events, month="2026-11", region="330102", config=SCORING, generated_at=GEN_AT)
    b = next(w for w in nov.windows if w.window == "个体登记窗口")
    # the unresolved bad rating of October costs its points in November, when its finding fired
    assert b.deductions["quality"] == Decimal("2.00") and b.figures.ratings == 0


def test_month_bounds_are_china_time_and_cross_the_year() -> None:
    from datetime import UTC

    from reports.monthly import month_bounds

    assert month_bounds("2026-12") == (t("2026-12-01 00:00"), t("2027-01-01 00:00"))
    # a completion at 23:59:59 China time on the 31st (15:59:59 UTC) is October's, 00:00 on the 1st is not
    facts = [prom("Q1", "A", "2026-10-30 09:00", "2026-10-31 23:59:59", "2026-11-02 00:00"),
             prom("Q2", "A", "2026-10-30 09:00", "2026-11-01 00:00", "2026-11-02 00:00")]
    facts[0]["completed_at"] = facts[0]["completed_at"].astimezone(UTC)
    r = build(facts, [], [], month=MONTH, config=SCORING, generated_at=GEN_AT)
    assert r.windows[0].figures.completed == 1 and r.windows[0].figures.received == 2


def test_bad_inputs_are_refused_clearly() -> None:
    facts, findings, events = hand_month()
    with pytest.raises(ReportInputError, match="YYYY-MM"):
        build(facts, findings, events, month="2026/10", config=SCORING, generated_at=GEN_AT)
    naive = [dict(facts[0], accepted_at=datetime(2026, 10, 1, 9))]
    with pytest.raises(ReportInputError, match="没有时区"):
        build(naive, [], [], month=MONTH, config=SCORING, generated_at=GEN_AT)
    with pytest.raises(ReportInputError, match="generated_at"):
        build(facts, findings, events, month=MONTH, config=SCORING)


# ------------------------------------------------------------------------------------- scoring


def test_shipped_scoring_configuration_is_complete() -> None:
    cfg = load_scoring()
    assert sum(i.weight for i in cfg.indicators) == 100
    listed = {code for fam in cfg.families for code in fam.rules}
    assert listed == set(RULES)
    assert [g.name for g in cfg.grades] == ["优秀", "良好", "合格", "不合格"]
    assert [g.min for g in cfg.grades] == [90, 80, 60, 0]


def test_scoring_configuration_problems_are_all_reported() -> None:
    doc = scoring_doc()
    doc["indicators"]["on_time_rate"]["weight"] = 40
    del doc["deductions"]["fee"]["rules"]["FEE.DUPLICATE"]
    doc["deductions"]["fee"]["rules"]["FEE.NOPE"] = 1
    doc["deductions"]["timeout"]["rules"]["FEE.NO_BASIS"] = 1
    doc["grades"] = [{"name": "好", "min": 50}, {"name": "差", "min": 60}]
    with pytest.raises(ScoringConfigError) as exc:
        parse_scoring(doc)
    text = str(exc.value)
    for needle in ("权重之和应为 100", "FEE.DUPLICATE", "FEE.NOPE", "不属于 timeout", "严格递减", "min 须为 0"):
        assert needle in text, needle
    # the grade boundary is on the rounded score
    assert SCORING.grade(Decimal("89.99")) == "良好" and SCORING.grade(Decimal("90.00")) == "优秀"
    assert SCORING.grade(Decimal("59.99")) == "不合格" and SCORING.grade(Decimal("60")) == "合格"


def test_best_worst_with_few_windows() -> None:
    facts = [spot("E1", "E", "19"), spot("D3", "D", "16"), spot("C2", "C", "14"), spot("C9", "C", "15")]
    report = build(facts, [], [], month=MONTH, config=parse_scoring({**scoring_doc(), "ranking": {"min_cases": 1}}),
                   generated_at=GEN_AT)
    # three ranked windows: one best, one worst (half of three, rounded down)
    assert [w.mark for w in report.windows] == ["三优", "", "三差"]
    # C has two completions; D and E tie on everything but the name (公安局 before 税务局)
    assert [w.window for w in report.windows] == ["户政窗口", "出入境窗口", "办税窗口"]
