"""Python objects -> warehouse columns: events (valid or not), case facts, findings, notes.

Columns, not rows: a million events become a dozen lists built by list comprehensions (C loops over
msgspec structs), which is what lets the embedded path store 200,000+ events a second from Python.

Personal data (applicant name, ID number, phone) is stored in ``case_facts`` only. Findings and notes
are free text written by rule code; :func:`scrub` masks ID numbers, mobile numbers and the case's
known applicant details in them before they are written, so a careless message template cannot leak
personal data into the findings table or anything that reads it (dashboards, exports, alerts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from rules.facts import CaseFacts
from rules.findings import Finding, Note
from schemas.events import CHINA_TZ, EVENT_TYPES, InvalidEvent

EPOCH = datetime.fromtimestamp(0, UTC)
"""Filing time of an invalid line whose event time cannot be read (it lands in partition 197001)."""

_TAGS: dict[type, str] = {cls: tag for tag, cls in EVENT_TYPES.items()}
_FACT_FIELDS = CaseFacts.__struct_fields__
_FINDING_FIELDS = Finding.__struct_fields__
_loose = msgspec.json.Decoder()

# ------------------------------------------------------------------------------------ personal data

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID18 = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_ID15 = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{5})(\d{4})(?![0-9A-Za-z])")
_LONG_NUMBER = re.compile(r"\d{11}")  # nothing shorter can be a phone or ID number
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def _id_ok(digits: str) -> bool:
    """GB 11643 check digit: a case number of 18 digits is rarely a valid ID number by accident."""
    total = sum(int(d) * w for d, w in zip(digits[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == digits[17].upper()


def _mask_id18(m: re.Match[str]) -> str:
    whole = m.group(0)
    return f"{whole[:6]}********{whole[-4:]}" if _id_ok(whole) else whole


def mask_value(value: str) -> str:
    """张** for a name, 110101********1234 for an ID number, 138****5678 for a phone."""
    if len(value) >= 15 and value[:6].isdigit():
        return f"{value[:6]}{'*' * (len(value) - 10)}{value[-4:]}"
    if len(value) >= 7 and value.isdigit():
        return f"{value[:3]}{'*' * (len(value) - 7)}{value[-4:]}"
    return value[:1] + "*" * max(len(value) - 1, 1)


def _scrub_part(text: str, known: Sequence[str]) -> str:
    for value in known:
        if value and value in text:
            text = text.replace(value, mask_value(value))
    if _LONG_NUMBER.search(text):
        text = _ID18.sub(_mask_id18, text)
        text = _ID15.sub(lambda m: f"{m.group(1)}*****{m.group(3)}", text)
        text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return text


def scrub(text: str, case_id: str = "", known: Sequence[str] = ()) -> str:
    """Mask personal data in free text; the case's own number is left intact even if it looks like one."""
    if not text:
        return text
    if case_id and case_id in text:
        return case_id.join(_scrub_part(part, known) for part in text.split(case_id))
    return _scrub_part(text, known)


# ------------------------------------------------------------------------------------------- events


def _loose_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=CHINA_TZ)


def _invalid_row(inv: InvalidEvent, raw: bytes, received: datetime) -> tuple[Any, ...]:
    """What can be read from a rejected line, only to file it: the error says what is wrong with it."""
    try:
        obj = _loose.decode(raw)
    except (msgspec.DecodeError, TypeError):
        obj = None
    if not isinstance(obj, dict):
        obj = {}

    def text(key: str) -> str:
        v = obj.get(key)
        return v[:256] if isinstance(v, str) else ""

    occurred = _loose_time(obj.get("occurred_at")) or EPOCH
    return (text("case_id"), occurred, inv.event_id or text("event_id"), text("event_type"), text("source"),
            _loose_time(obj.get("recorded_at")), received, text("officer_id"), 0, 0, inv.error,
            inv.position or 0, raw)


_EVENT_COLUMNS = ("case_id", "occurred_at", "event_id", "event_type", "source", "recorded_at", "received_at",
                  "officer_id", "level", "valid", "error", "position", "raw")


def event_columns(items: Sequence[tuple[Any, bytes, datetime]]) -> dict[str, list[Any]]:
    """Columns for ``events`` from (event or InvalidEvent, raw bytes as received, received_at)."""
    tags = _TAGS
    evs = [it[0] for it in items]
    try:  # the usual batch: all valid, event types found by C-level maps
        event_type = list(map(tags.__getitem__, map(type, evs)))
        valid: Sequence[tuple[Any, bytes, datetime]] = items
        invalid: Sequence[tuple[Any, bytes, datetime]] = ()
    except KeyError:
        valid = [it for it in items if type(it[0]) in tags]
        invalid = [it for it in items if type(it[0]) not in tags]
        evs = [it[0] for it in valid]
        event_type = list(map(tags.__getitem__, map(type, evs)))
    n = len(evs)
    cols: dict[str, list[Any]] = {
        "case_id": [e.case_id for e in evs],
        "occurred_at": [e.occurred_at for e in evs],
        "event_id": [e.event_id for e in evs],
        "event_type": event_type,
        "source": [e.source for e in evs],
        "recorded_at": [e.recorded_at for e in evs],
        "received_at": [it[2] for it in valid],
        "officer_id": [e.officer_id for e in evs],  # None -> '' when the column is built
        "level": [getattr(e, "level", 0) for e in evs],
        "valid": [1] * n,
        "error": [""] * n,
        "position": [0] * n,
        "raw": [it[1] for it in valid],
    }
    for it in invalid:
        inv = it[0]
        if not isinstance(inv, InvalidEvent):
            raise TypeError(f"add_events: expected an event or InvalidEvent, got {type(inv).__name__}")
        for name, value in zip(_EVENT_COLUMNS, _invalid_row(inv, it[1], it[2]), strict=True):
            cols[name].append(value)
    return cols


def chain_items(items: Sequence[tuple[Any, bytes, datetime]]) -> list[tuple[str, str, bytes]]:
    """(case_id, event_id, raw) of each line, as ``events`` files it (invalid lines as far as readable)."""
    out = []
    for ev, raw, received in items:
        if type(ev) in _TAGS:
            out.append((ev.case_id, ev.event_id, raw))
        else:
            row = _invalid_row(ev, raw, received)
            out.append((row[0], row[2], raw))
    return out


# -------------------------------------------------------------------------------------------- facts


def facts_columns(facts: Iterable[CaseFacts]) -> dict[str, list[Any]]:
    """Columns for ``case_facts``; bools become 0/1 and the tuple of officers an array."""
    tuples = [msgspec.structs.astuple(f) for f in facts]
    if not tuples:
        return {}
    cols = dict(zip(_FACT_FIELDS, (list(c) for c in zip(*tuples, strict=True)), strict=True))
    cols["on_time"] = [None if v is None else int(v) for v in cols["on_time"]]
    return cols


def pii_of(f: CaseFacts) -> tuple[str, ...]:
    return tuple(v for v in (f.applicant_name, f.applicant_id_number, f.applicant_phone) if v)


def findings_columns(findings: Sequence[tuple[str, Finding]],
                     known: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[Any]]:
    """Columns for ``findings`` from (run_id, finding); free text scrubbed of personal data."""
    tuples = [msgspec.structs.astuple(f) for _, f in findings]
    if not tuples:
        return {}
    cols = dict(zip(_FINDING_FIELDS, (list(c) for c in zip(*tuples, strict=True)), strict=True))
    known = known or {}
    cases = cols["case_id"]
    cols["message"] = [scrub(m, c, known.get(c, ())) for m, c in zip(cols["message"], cases, strict=True)]
    cols["basis"] = [scrub(b, c, known.get(c, ())) for b, c in zip(cols["basis"], cases, strict=True)]
    cols["run_id"] = [r for r, _ in findings]
    cols["category"] = [r.split(".", 1)[0] for r in cols["rule"]]
    return cols


def notes_columns(notes: Sequence[tuple[str, Note]],
                  known: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[Any]]:
    known = known or {}
    return {
        "run_id": [r for r, _ in notes],
        "case_id": [n.case_id for _, n in notes],
        "event_id": [n.event_id for _, n in notes],
        "kind": [n.kind for _, n in notes],
        "message": [scrub(n.message, n.case_id, known.get(n.case_id, ())) for _, n in notes],
    }
