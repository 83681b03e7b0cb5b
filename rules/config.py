"""Supervision thresholds (监察参数): every number a rule compares against that the catalog does not hold.

Local rules differ (a bad rating must be put right in 5, 10 or 15 working days), so each threshold
lives in ``config/rules.yaml`` and is recorded here with the default that DOMAIN.md gives.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

DEFAULT_RULES_CONFIG = Path(__file__).resolve().parent.parent / "config" / "rules.yaml"


class RuleConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: str = "default"
    # timeouts
    warning_days_left: int = 1  # TIMEOUT.PROMISED_WARNING when this many working days are left …
    warning_fraction: float = 0.8  # … or this share of the promised working days is used
    intake_days: int = 5  # 行政许可法 第32条: decide on intake within 5 working days
    default_statutory_days: int = 20  # 第42条
    # fees
    refund_days: int = 10  # FEE.NOT_REFUNDED: working days to refund after rejection/denial/withdrawal
    # procedure
    off_hours_start: str = "20:00"  # PROCEDURE.OFF_HOURS: decisions between these hours (China time) …
    off_hours_end: str = "07:00"  # … or on a non-working day
    off_hours_steps: tuple[str, ...] = ("批准", "决定")  # steps that count as a decision or approval
    backdate_tolerance_hours: int = 72  # PROCEDURE.BACKDATED: recorded this much after it happened
    # quality
    bad_rating_max_level: int = 2  # 1 非常不满意, 2 不满意
    bad_rating_days: int = 15  # QUALITY.BAD_RATING_UNRESOLVED
    complaint_days: int = 5  # QUALITY.COMPLAINT_OVERDUE
    # input
    naive_timezone: str | None = None  # e.g. "+08:00": how to read a time written without offset


class ConfigError(ValueError):
    pass


def load_rule_config(path: str | Path | None = None) -> RuleConfig:
    path = Path(path) if path else DEFAULT_RULES_CONFIG
    if not path.exists():
        return RuleConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return msgspec.convert(data, RuleConfig, strict=False)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
