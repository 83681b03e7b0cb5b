"""The case-event contract (办件过程事件): typed models, decoding and validation.

Approval-system vendors implement against ``case_event.schema.json``; these msgspec structs are the
same contract in Python. Field and type names are public: never rename them. Unknown extra fields
are accepted and ignored, so vendors may send more than we read.

msgspec was chosen because it decodes and validates a million events in about a second, which the
replay of a province's year needs, and its errors already name the failing path (``$.amount``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time. China has kept UTC+8 all year since 1991, so a fixed offset is exact."""

MAX_EVENT_BYTES = 64 * 1024
"""One event (one JSON Lines line) may not exceed this; larger input is rejected with a clear error."""

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]
RegionCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
Money = Decimal
"""Yuan, as a JSON number or decimal string; checked non-negative in ``__post_init__``."""
Days = Annotated[int, msgspec.Meta(ge=0, le=3650)]


class Applicant(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The applicant (申请人). Personal data: stored only where needed, masked in every output."""

    name: Text | None = None
    id_number: Text | None = None
    phone: Text | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="event_type"):
    """Fields every event carries."""

    event_id: NonEmpty
    case_id: NonEmpty
    occurred_at: datetime
    source: NonEmpty
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=1)] = SCHEMA_VERSION
    recorded_at: datetime | None = None
    officer_id: NonEmpty | None = None

    @property
    def event_type(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]


class _Intake(Event, frozen=True, kw_only=True):
    item_code: NonEmpty | None = None
    region_code: RegionCode | None = None
    department: NonEmpty | None = None
    window: NonEmpty | None = None
    applicant: Applicant | None = None


class Submitted(_Intake, frozen=True, kw_only=True, tag="submitted"):
    """收件/申请: the application reached the window."""


class Accepted(_Intake, frozen=True, kw_only=True, tag="accepted"):
    """受理: the clock starts. ``due_at`` is the promised deadline the source system published (承诺办结时间)."""

    due_at: datetime | None = None


class IntakeRejected(Event, frozen=True, kw_only=True, tag="intake_rejected"):
    """不予受理."""

    reason: Text | None = None


class SupplementRequested(Event, frozen=True, kw_only=True, tag="supplement_requested"):
    """补正告知: the applicant must supply missing materials; the clock stops."""

    materials: list[Text] | None = None


class SupplementReceived(Event, frozen=True, kw_only=True, tag="supplement_received"):
    """补正材料收到: the clock runs again."""


class StepCompleted(Event, frozen=True, kw_only=True, tag="step_completed"):
    """承办 / 审查 / 现场勘查 / 审核 / 批准 / 决定 … completed by ``officer_id``."""

    step: NonEmpty


class Suspended(Event, frozen=True, kw_only=True, tag="suspended"):
    """特别程序 (听证, 专家评审, 检验检测, 公示 …): the clock stops (行政许可法 第45条)."""

    procedure: NonEmpty
    planned_days: Days | None = None


class Resumed(Event, frozen=True, kw_only=True, tag="resumed"):
    """The special procedure ended; the clock runs again."""


class ExtensionGranted(Event, frozen=True, kw_only=True, tag="extension_granted"):
    """延期, approved once by the head of the office (第42条)."""

    days: Annotated[int, msgspec.Meta(ge=1, le=365)]
    approved_by: NonEmpty


class _Fee(Event, frozen=True, kw_only=True):
    amount: Money | None = None

    def __post_init__(self) -> None:
        if self.amount is not None and (not self.amount.is_finite() or self.amount < 0):
            raise ValueError("`amount` must be a finite, non-negative number of yuan")


class FeeAssessed(_Fee, frozen=True, kw_only=True, tag="fee_assessed"):
    """收费通知: the window issues a payment notice."""

    fee_code: NonEmpty
    amount: Money


class FeePaid(_Fee, frozen=True, kw_only=True, tag="fee_paid"):
    """缴费. 票款分离: the bank or an online channel collects, never the window."""

    fee_code: NonEmpty
    amount: Money
    channel: Literal["bank", "online", "window_cash"]


class FeeWaived(_Fee, frozen=True, kw_only=True, tag="fee_waived"):
    """减免, with the approval that allows it."""

    fee_code: NonEmpty
    amount: Money
    approval_ref: NonEmpty | None = None


class FeeRefunded(_Fee, frozen=True, kw_only=True, tag="fee_refunded"):
    """退费."""

    fee_code: NonEmpty | None = None
    amount: Money | None = None


class Decided(Event, frozen=True, kw_only=True, tag="decided"):
    """准予 / 不予许可."""

    outcome: Literal["approved", "denied"]


class Completed(Event, frozen=True, kw_only=True, tag="completed"):
    """办结: the clock stops for good."""


class Delivered(Event, frozen=True, kw_only=True, tag="delivered"):
    """送达 / 出证."""


class Withdrawn(Event, frozen=True, kw_only=True, tag="withdrawn"):
    """撤回 by the applicant."""


class Rated(Event, frozen=True, kw_only=True, tag="rated"):
    """好差评: 1 非常不满意, 2 不满意, 3 基本满意, 4 满意, 5 非常满意."""

    level: Annotated[int, msgspec.Meta(ge=1, le=5)]
    comment: Text | None = None


class RatingResolved(Event, frozen=True, kw_only=True, tag="rating_resolved"):
    """差评整改: a bad rating was followed up and put right."""


class ComplaintFiled(Event, frozen=True, kw_only=True, tag="complaint_filed"):
    """投诉."""

    complaint_id: NonEmpty | None = None


class ComplaintResolved(Event, frozen=True, kw_only=True, tag="complaint_resolved"):
    """投诉办结."""

    complaint_id: NonEmpty | None = None


AnyEvent = (
    Submitted | Accepted | IntakeRejected | SupplementRequested | SupplementReceived | StepCompleted
    | Suspended | Resumed | ExtensionGranted | FeeAssessed | FeePaid | FeeWaived | FeeRefunded | Decided
    | Completed | Delivered | Withdrawn | Rated | RatingResolved | ComplaintFiled | ComplaintResolved
)

EVENT_TYPES: dict[str, type[Event]] = {
    t.__struct_config__.tag: t  # type: ignore[misc]
    for t in AnyEvent.__args__  # type: ignore[attr-defined]
}


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """A line that did not pass the contract: kept with its reason, never dropped."""

    raw: bytes
    error: str
    position: int | None = None
    event_id: str | None = None

    def describe(self) -> str:
        where = f"event {self.event_id}" if self.event_id else f"line {self.position}"
        return f"{where}: {self.error}"


_decoder = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder(decimal_format="number")
_loose = msgspec.json.Decoder()


def _event_id_of(raw: bytes) -> str | None:
    try:
        obj = _loose.decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
        return obj["event_id"][:256]
    return None


def _fix_naive(value: datetime | None, name: str, naive_tz: timezone | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    if naive_tz is None:
        raise ValueError(f"`{name}` has no UTC offset (naive time); send ISO 8601 with an offset, e.g. +08:00")
    return value.replace(tzinfo=naive_tz)


def decode_event(raw: bytes | str, *, position: int | None = None,
                 naive_tz: timezone | None = None) -> AnyEvent | InvalidEvent:
    """Decode and validate one event. Never raises on bad input: returns an InvalidEvent with the reason.

    ``naive_tz`` is the meaning of a time written without an offset; None (the default) makes such a
    time an error, because guessing a time zone silently moves deadlines.
    """
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_EVENT_BYTES:
        return InvalidEvent(data[:1024], f"event is {len(data)} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                            position, None)
    try:
        ev = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return InvalidEvent(data, f"schema: {exc}", position, _event_id_of(data))
    except msgspec.DecodeError as exc:
        return InvalidEvent(data, f"malformed JSON: {exc}", position, None)
    try:
        fixes: dict[str, datetime | None] = {}
        for name in ("occurred_at", "recorded_at", "due_at"):
            value = getattr(ev, name, None)
            if value is not None and value.tzinfo is None:
                fixes[name] = _fix_naive(value, name, naive_tz)
        if fixes:
            ev = msgspec.structs.replace(ev, **fixes)
    except ValueError as exc:
        return InvalidEvent(data, f"schema: {exc} - at `$.{name}`", position, ev.event_id)
    return ev


_many_decoder = msgspec.json.Decoder(list[AnyEvent])


def decode_all_valid(lines: Sequence[bytes]) -> list[AnyEvent] | None:
    """All of ``lines`` decoded in one call, in order — or None when any of them would not pass
    ``decode_event`` as it is (too long, not valid, or a time without an offset): then decode them one by one.

    For lines that were valid when stored (an audit replay reads a million of them): one C call for
    the lot instead of a Python call, an encode and a check per line.
    """
    if not lines:
        return []
    if max(map(len, lines)) > MAX_EVENT_BYTES:
        return None
    try:
        # one copy of the lines: the brackets ride on the first and last (a bucket is tens of MB)
        events = _many_decoder.decode(b",".join([b"[" + lines[0], *lines[1:-1], lines[-1] + b"]"])
                                      if len(lines) > 1 else b"[" + lines[0] + b"]")
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if len(events) != len(lines):  # a "line" holding two objects joined by a comma, say
        return None
    for ev in events:
        if ev.occurred_at.tzinfo is None or (ev.recorded_at is not None and ev.recorded_at.tzinfo is None) \
                or (isinstance(ev, Accepted) and ev.due_at is not None and ev.due_at.tzinfo is None):
            return None
    return events


def read_events(lines: Iterable[bytes | str], *, naive_tz: timezone | None = None,
                ) -> Iterator[AnyEvent | InvalidEvent]:
    """Decode a JSON Lines stream; blank lines are skipped, each bad line becomes an InvalidEvent."""
    for n, line in enumerate(lines, start=1):
        if isinstance(line, str):
            line = line.encode()
        stripped = line.strip()
        if not stripped:
            continue
        yield decode_event(stripped, position=n, naive_tz=naive_tz)


def encode_event(event: Event) -> bytes:
    """Canonical JSON for one event (amounts as JSON numbers, times in ISO 8601 with offset)."""
    return _encoder.encode(event)


def event_to_dict(event: Event) -> dict:
    return msgspec.to_builtins(event)
