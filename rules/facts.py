"""Case facts (办件事实): the current state of one case flattened for storage and reports.

The engine derives them from a case's events; the warehouse stores one row per case version
(ReplacingMergeTree by ``version``), and dashboards and the monthly export read them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec

Status = Literal[
    "submitted",  # 已收件
    "accepted",  # 已受理, in progress
    "paused",  # 补正 or 特别程序: clock stopped
    "decided",  # 已决定, not yet completed
    "completed",  # 已办结
    "rejected",  # 不予受理
    "withdrawn",  # 已撤回
    "unknown",  # events for a case with no intake yet
]


class CaseFacts(msgspec.Struct, frozen=True, kw_only=True):
    case_id: str
    version: int  # number of distinct events applied; a later version replaces an earlier one
    status: Status
    item_code: str | None
    item_name: str | None
    item_kind: str | None  # on_the_spot | promised
    department: str | None
    window: str | None
    region_code: str | None
    catalog_version: str | None
    applicant_name: str | None  # personal data: stored here only, masked everywhere it is shown
    applicant_id_number: str | None
    applicant_phone: str | None
    officers: tuple[str, ...]
    submitted_at: datetime | None
    accepted_at: datetime | None
    clock_start_at: datetime | None  # acceptance, or submission under 第32条
    promised_due_at: datetime | None  # None while paused or for 即办件
    statutory_due_at: datetime | None
    decided_at: datetime | None
    outcome: str | None  # approved | denied
    completed_at: datetime | None
    delivered_at: datetime | None
    paused_working_days: int
    supplement_count: int
    extension_days: int
    fee_assessed: Decimal
    fee_paid: Decimal
    fee_waived: Decimal
    fee_refunded: Decimal
    rating_level: int | None  # the latest rating
    complaint_count: int
    on_time: bool | None  # completed by the promised (or, for 即办件, same-day) deadline; None while open
    last_event_at: datetime
