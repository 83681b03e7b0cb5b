"""The scoring configuration of the monthly accountability export (月度考核评分办法) and its arithmetic.

Scores are published and contested, so every number here is exact: rates are fractions, weights and
points are decimals, and the only rounding is the documented one (each indicator score to 0.01, half
up), so the figures on a sheet add up to the total printed beside them. The configuration is data
(``config/scoring.yaml``); it is checked as a whole so that a new rule code without a deduction, or
weights that do not add up to 100, are refused instead of silently changing what a score means.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from rules.registry import RULES

DEFAULT_SCORING = Path(__file__).resolve().parent.parent / "config" / "scoring.yaml"

CENT = Decimal("0.01")

INDICATORS: dict[str, tuple[str, str]] = {
    # key: (numerator figure, denominator figure) — see reports.monthly.Figures
    "on_time_rate": ("completed_on_time", "completed"),
    "on_the_spot_rate": ("on_the_spot_same_day", "on_the_spot_completed"),
    "satisfaction_rate": ("ratings_good", "ratings"),
    "bad_rating_fix_rate": ("bad_ratings_fixed", "bad_ratings_due"),
    "complaint_fix_rate": ("complaints_fixed", "complaints_due"),
}
"""The rates an indicator may score, each a share of two monthly figures."""

FAMILIES = ("timeout", "fee", "procedure", "quality")


class ScoringConfigError(ValueError):
    """A scoring configuration that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        super().__init__("评分配置有误：" + "；".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Indicator:
    key: str
    name: str
    weight: Decimal
    full_at: Fraction
    zero_at: Fraction


@dataclass(frozen=True)
class Family:
    key: str
    name: str
    cap: Decimal
    rules: dict[str, Decimal]


@dataclass(frozen=True)
class Grade:
    name: str
    min: Decimal


@dataclass(frozen=True)
class ScoringConfig:
    version: str
    name: str
    indicators: tuple[Indicator, ...]
    families: tuple[Family, ...]
    max_total_deduction: Decimal
    grades: tuple[Grade, ...]
    min_cases: int
    best_worst: int
    satisfied_min_level: int
    bad_max_level: int
    sha256: str  # of the canonical content (comments and layout do not change it)

    def points(self, rule: str) -> Decimal:
        """Points one finding of ``rule`` costs; an unknown rule code costs nothing (and is reported)."""
        for fam in self.families:
            if rule in fam.rules:
                return fam.rules[rule]
        return Decimal(0)

    def family_of(self, rule: str) -> str | None:
        for fam in self.families:
            if rule in fam.rules:
                return fam.key
        info = RULES.get(rule)
        return info.family if info else None

    def grade(self, score: Decimal) -> str:
        for g in self.grades:
            if score >= g.min:
                return g.name
        return self.grades[-1].name


def _dec(value: Any, where: str, problems: list[str]) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append(f"{where} 应为数字，实为 {value!r}")
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        problems.append(f"{where} 应为数字，实为 {value!r}")
        return None
    if not d.is_finite():
        problems.append(f"{where} 应为有限数字，实为 {value!r}")
        return None
    return d


def _int(value: Any, where: str, problems: list[str], minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{where} 应为不小于 {minimum} 的整数，实为 {value!r}")
        return minimum
    return value


def parse_scoring(doc: Any) -> ScoringConfig:
    """Check a parsed configuration document and return it typed; every problem is reported at once."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise ScoringConfigError(["顶层应为映射（YAML 字典）"])
    version = doc.get("version")
    if not isinstance(version, str | int | float) or isinstance(version, bool) or not str(version).strip():
        problems.append("version 必填（评分办法版本号）")
    name = str(doc.get("name") or "月度考核评分办法")

    indicators: list[Indicator] = []
    raw_ind = doc.get("indicators")
    if not isinstance(raw_ind, dict):
        problems.append("indicators 必填（映射：指标 -> 权重等）")
        raw_ind = {}
    for key, spec in raw_ind.items():
        where = f"indicators.{key}"
        if key not in INDICATORS:
            problems.append(f"{where}：未知指标，可用：{', '.join(INDICATORS)}")
            continue
        if not isinstance(spec, dict):
            problems.append(f"{where} 应为映射（name, weight, full_at, zero_at）")
            continue
        weight = _dec(spec.get("weight"), f"{where}.weight", problems)
        full = _dec(spec.get("full_at", 1), f"{where}.full_at", problems)
        zero = _dec(spec.get("zero_at", 0), f"{where}.zero_at", problems)
        if weight is None or full is None or zero is None:
            continue
        if weight < 0:
            problems.append(f"{where}.weight 不能为负数")
        if not (0 <= zero < full <= 1):
            problems.append(f"{where}：须 0 ≤ zero_at < full_at ≤ 1（实为 zero_at={zero}, full_at={full}）")
        indicators.append(Indicator(key, str(spec.get("name") or key), weight, Fraction(full), Fraction(zero)))
    total_weight = sum((i.weight for i in indicators), Decimal(0))
    if indicators and total_weight != 100:
        problems.append(f"indicators 的权重之和应为 100（满分），实为 {total_weight}")

    families: list[Family] = []
    raw_ded = doc.get("deductions")
    if not isinstance(raw_ded, dict):
        problems.append("deductions 必填（映射：类别 -> cap, rules）")
        raw_ded = {}
    seen: dict[str, str] = {}
    for fam_key, spec in raw_ded.items():
        where = f"deductions.{fam_key}"
        if fam_key not in FAMILIES:
            problems.append(f"{where}：未知类别，可用：{', '.join(FAMILIES)}")
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("rules"), dict):
            problems.append(f"{where} 应为映射并含 rules（规则编码 -> 每条扣分）")
            continue
        cap = _dec(spec.get("cap", 100), f"{where}.cap", problems)
        rules: dict[str, Decimal] = {}
        for code, pts in spec["rules"].items():
            info = RULES.get(code)
            if info is None:
                problems.append(f"{where}.rules.{code}：规则编码不存在（见 rules/registry.py）")
                continue
            if info.family != fam_key:
                problems.append(f"{where}.rules.{code}：该规则属于 {info.family} 类，不属于 {fam_key}")
                continue
            if code in seen:
                problems.append(f"{where}.rules.{code}：已在 deductions.{seen[code]} 中出现")
                continue
            seen[code] = fam_key
            p = _dec(pts, f"{where}.rules.{code}", problems)
            if p is not None:
                if p < 0:
                    problems.append(f"{where}.rules.{code} 扣分不能为负数")
                rules[code] = p
        if cap is not None and cap < 0:
            problems.append(f"{where}.cap 不能为负数")
        families.append(Family(fam_key, str(spec.get("name") or fam_key), cap or Decimal(0), rules))
    missing = sorted(set(RULES) - set(seen))
    if missing:
        problems.append("以下规则未配置扣分（不扣分请写 0）：" + "、".join(missing))
    max_total = _dec(doc.get("max_total_deduction", 100), "max_total_deduction", problems) or Decimal(100)

    grades: list[Grade] = []
    raw_grades = doc.get("grades")
    if not isinstance(raw_grades, list) or not raw_grades:
        problems.append("grades 必填（列表：name, min，由高到低）")
        raw_grades = []
    for i, g in enumerate(raw_grades):
        if not isinstance(g, dict) or not g.get("name"):
            problems.append(f"grades[{i}] 应含 name 与 min")
            continue
        m = _dec(g.get("min"), f"grades[{i}].min", problems)
        if m is not None:
            grades.append(Grade(str(g["name"]), m))
    if grades:
        if any(a.min <= b.min for a, b in zip(grades, grades[1:], strict=False)):
            problems.append("grades 的 min 须由高到低严格递减")
        if grades[-1].min != 0:
            problems.append("grades 最后一档的 min 须为 0（每个分数都有等级）")

    ranking = doc.get("ranking") or {}
    ratings = doc.get("ratings") or {}
    if not isinstance(ranking, dict) or not isinstance(ratings, dict):
        problems.append("ranking 与 ratings 应为映射")
        ranking, ratings = {}, {}
    min_cases = _int(ranking.get("min_cases", 1), "ranking.min_cases", problems)
    best_worst = _int(ranking.get("best_worst", 3), "ranking.best_worst", problems)
    satisfied = _int(ratings.get("satisfied_min_level", 4), "ratings.satisfied_min_level", problems, 1)
    bad = _int(ratings.get("bad_max_level", 2), "ratings.bad_max_level", problems, 1)
    if not (1 <= bad < satisfied <= 5):
        problems.append("ratings：须 1 ≤ bad_max_level < satisfied_min_level ≤ 5")
    if problems:
        raise ScoringConfigError(problems)
    canonical = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return ScoringConfig(
        version=str(version), name=name, indicators=tuple(indicators), families=tuple(families),
        max_total_deduction=max_total, grades=tuple(grades), min_cases=min_cases, best_worst=best_worst,
        satisfied_min_level=satisfied, bad_max_level=bad,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def load_scoring(path: str | Path | None = None) -> ScoringConfig:
    """Read and check a scoring file (default ``config/scoring.yaml``)."""
    p = Path(path) if path is not None else DEFAULT_SCORING
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScoringConfigError([f"无法读取评分配置 {p}：{exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ScoringConfigError([f"评分配置 {p} 不是有效的 YAML：{exc}"]) from None
    return parse_scoring(doc)


def rate(num: int, den: int) -> Fraction | None:
    """An exact share, or None when there is nothing to measure."""
    return Fraction(num, den) if den else None


def cents(value: Fraction | Decimal) -> Decimal:
    """Round to 0.01, half up — the one rounding a published score goes through."""
    if isinstance(value, Fraction):
        return (Decimal(math.floor(value * 100 + Fraction(1, 2))) / 100).quantize(CENT)
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def indicator_score(ind: Indicator, share: Fraction | None) -> Decimal:
    """weight × clamp((share − zero_at) / (full_at − zero_at), 0, 1), to 0.01; full weight when no share."""
    if share is None:
        return cents(ind.weight)
    part = (share - ind.zero_at) / (ind.full_at - ind.zero_at)
    part = min(Fraction(1), max(Fraction(0), part))
    return cents(Fraction(ind.weight) * part)
