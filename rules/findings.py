"""Findings (监察发现): what a rule concludes about a case, as plain data.

The engine returns findings; it never sends them. Ids are deterministic from case, rule and
occurrence so that a replay, a retry or a second worker produces the same id and storage keeps one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec

Severity = Literal["yellow", "red"]  # 黄牌 (warning, to the department) | 红牌 (also to 纪检监察)


def finding_id(case_id: str, rule: str, occurrence: str) -> str:
    key = f"{case_id}|{rule}|{occurrence}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    finding_id: str
    rule: str
    severity: Severity
    case_id: str
    item_code: str | None
    department: str | None
    window: str | None
    region_code: str | None
    officer_id: str | None
    fired_at: datetime  # event time: the deadline instant, or the event that showed it
    message: str  # plain Chinese: what happened and what the limit was
    basis: str  # the catalog entry or the article of law
    catalog_version: str | None
    occurrence: str
    deadline: datetime | None = None
    event_id: str | None = None  # the event that triggered it, if one did


class Note(msgspec.Struct, frozen=True, kw_only=True):
    """An event the engine could not use as a rule input, and why. Stored with the event; never silent."""

    kind: Literal["duplicate_event", "no_intake", "unknown_item", "impossible_transition", "out_of_calendar"]
    case_id: str
    event_id: str
    message: str


_enc = msgspec.json.Encoder()


def encode_finding(f: Finding) -> bytes:
    return _enc.encode(f)


def decode_finding(raw: bytes | str) -> Finding:
    return msgspec.json.decode(raw, type=Finding)
