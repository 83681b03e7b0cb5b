"""Case state: the compact history of one case and what it implies, as plain serialisable data.

The state keeps each distinct event as a small ``Fact`` sorted by event time, and a ``Derived``
summary built by folding those facts in order. An event that arrives in order is folded onto the
summary (cheap); one that arrives out of order is inserted and the summary is rebuilt from the
facts, so rules always see the case as it happened in event time. One fold function serves both.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Mapping, Sequence
from decimal import Decimal
from sys import intern
from types import MappingProxyType

import msgspec

from schemas.events import (
    EVENT_TYPES,
    Accepted,
    AnyEvent,
    ComplaintFiled,
    ComplaintResolved,
    Decided,
    ExtensionGranted,
    FeeAssessed,
    FeePaid,
    FeeRefunded,
    FeeWaived,
    Rated,
    StepCompleted,
    Submitted,
    Suspended,
)

STATE_VERSION = 2  # 2: facts without seq/rec, flat intakes, step times only (1: up to ad4fc31)
ZERO = Decimal(0)

# Every struct here is ``gc=False``: a case state is a tree (no reference cycles), so the cyclic
# collector never needs to track it, and each untracked object is 16 bytes smaller — at 100,000 open
# cases with several structs each, that is megabytes, and full collections that walk fewer objects.


class Fact(msgspec.Struct, array_like=True, gc=False):
    """One applied event, reduced to what later judgements read. ``t`` is UTC epoch seconds.

    Facts are ordered by (time, event id), never by arrival. ``recorded_at`` is not kept: the one rule
    that reads it (补录) judges the event on arrival (``Engine.apply`` passes it to that rule).
    """

    t: float
    type: str
    eid: str
    officer: str | None = None
    s1: str | None = None  # step | procedure | fee_code | outcome | complaint_id
    s2: str | None = None  # channel | approval_ref
    num: Decimal | int | None = None  # amount | planned_days | extension days | rating level


class Intake(msgspec.Struct, array_like=True, gc=False):
    """What one ``submitted``/``accepted`` event said about the case, kept to resolve contradictions.

    ``t`` is the same float object as the event's fact; ``fields`` has no trailing Nones (an
    ``accepted`` event usually names only the item).
    """

    kind: int  # 0 accepted | 1 submitted
    t: float
    eid: str
    fields: tuple[str | None, ...]  # item_code, department, window, region_code, name, id_number, phone
    due_at: float | None = None

    def field(self, i: int) -> str | None:
        fields = self.fields
        return fields[i] if i < len(fields) else None


INFO_FIELDS = ("item_code", "department", "window", "region_code",
               "applicant_name", "applicant_id_number", "applicant_phone")


class CaseInfo(msgspec.Struct, array_like=True, gc=False):
    """Who and what the case is about. Each field comes from the best intake event that gives it:
    ``accepted`` before ``submitted``, then the earliest (time, id) — so arrival order never matters."""

    item_code: str | None = None
    department: str | None = None
    window: str | None = None
    region_code: str | None = None
    applicant_name: str | None = None
    applicant_id_number: str | None = None
    applicant_phone: str | None = None
    due_at: float | None = None
    from_accepted: bool = False
    catalog_version: str | None = None
    intakes: tuple[Intake, ...] = ()  # a tuple: most cases never fill a list's spare slots


class Pause(msgspec.Struct, array_like=True, gc=False):
    kind: str  # supplement | suspension
    start: float
    end: float | None
    eid: str
    planned_days: int | None = None


class FeeLedger(msgspec.Struct, array_like=True, gc=False):
    assessed: dict[str, int] = {}  # fee code -> times assessed
    assessed_first: dict[str, float] = {}  # fee code -> when first assessed
    settled: dict[str, float] = {}  # fee code -> when first paid or waived
    assessed_total: Decimal = ZERO
    paid_total: Decimal = ZERO
    waived_total: Decimal = ZERO
    refunded_total: Decimal = ZERO
    refunded_t: float | None = None  # when refunds first covered what was paid


class QualityLog(msgspec.Struct, array_like=True, gc=False):
    ratings: list[tuple[float, str, int]] = []  # (t, eid, level)
    rating_resolved: list[float] = []
    complaints: list[tuple[float, str, str | None]] = []  # (t, eid, complaint_id)
    complaint_resolved: list[tuple[float, str | None]] = []


_NO_MAP: Mapping = MappingProxyType({})


class Derived(msgspec.Struct, array_like=True, gc=False):
    """What the facts folded so far imply. Rebuilt from facts whenever an event arrives out of order."""

    submitted_t: float | None = None
    accepted_t: float | None = None
    rejected_t: float | None = None
    withdrawn_t: float | None = None
    decided_t: float | None = None
    outcome: str | None = None
    completed_t: float | None = None
    delivered_t: float | None = None
    close_eid: str | None = None  # the first decided/completed event (SKIPPED_STEP, NOT_ACCEPTED fire there)
    close_t: float | None = None
    close_officer: str | None = None
    delivered_eid: str | None = None
    pauses: tuple[Pause, ...] = ()  # most cases never pause: an empty tuple costs nothing per case
    supplement_count: int = 0
    extension_days: int = 0
    extension_count: int = 0
    steps: dict[str, float] = {}  # when each step was first completed (its officer: ``first_step``)
    fee: FeeLedger | None = None  # only for cases that saw a fee event (most items charge nothing)
    quality: QualityLog | None = None  # only once rated or complained about
    last_t: float = 0.0

    # Read-only views so rules need not care whether a ledger exists yet.
    @property
    def assessed(self) -> Mapping[str, int]:
        return self.fee.assessed if self.fee is not None else _NO_MAP

    @property
    def assessed_first(self) -> Mapping[str, float]:
        return self.fee.assessed_first if self.fee is not None else _NO_MAP

    @property
    def settled(self) -> Mapping[str, float]:
        return self.fee.settled if self.fee is not None else _NO_MAP

    @property
    def assessed_total(self) -> Decimal:
        return self.fee.assessed_total if self.fee is not None else ZERO

    @property
    def paid_total(self) -> Decimal:
        return self.fee.paid_total if self.fee is not None else ZERO

    @property
    def waived_total(self) -> Decimal:
        return self.fee.waived_total if self.fee is not None else ZERO

    @property
    def refunded_total(self) -> Decimal:
        return self.fee.refunded_total if self.fee is not None else ZERO

    @property
    def refunded_t(self) -> float | None:
        return self.fee.refunded_t if self.fee is not None else None

    @property
    def ratings(self) -> Sequence[tuple[float, str, int]]:
        return self.quality.ratings if self.quality is not None else ()

    @property
    def rating_resolved(self) -> Sequence[float]:
        return self.quality.rating_resolved if self.quality is not None else ()

    @property
    def complaints(self) -> Sequence[tuple[float, str, str | None]]:
        return self.quality.complaints if self.quality is not None else ()

    @property
    def complaint_resolved(self) -> Sequence[tuple[float, str | None]]:
        return self.quality.complaint_resolved if self.quality is not None else ()

    @property
    def terminal_t(self) -> float | None:
        """When the case's timeout clock stopped for good (办结, 撤回, 不予受理)."""
        best = self.completed_t
        w, r = self.withdrawn_t, self.rejected_t
        if w is None and r is None:  # the usual case: completed or still open
            return best
        for t in (w, r):
            if t is not None and (best is None or t < best):
                best = t
        return best

    @property
    def open_pause(self) -> Pause | None:
        for p in self.pauses:
            if p.end is None:
                return p
        return None


class CaseState(msgspec.Struct, gc=False):
    case_id: str
    v: int = STATE_VERSION
    info: CaseInfo = msgspec.field(default_factory=CaseInfo)
    facts: tuple[Fact, ...] = ()  # in (time, event id) order
    fired: tuple[str, ...] = ()  # "RULE|occurrence" of findings already raised, sorted (rarely any)
    d: Derived = msgspec.field(default_factory=Derived)
    now: float = 0.0  # the clock has been advanced to here
    next_due: float | None = None  # earliest pending clock deadline (cached for drivers' indexes)
    dues: list[float | None] = []  # earliest pending deadline per rule family (engine's _FAMILIES order)
    seq: int = 0

    def has_fired(self, key: str) -> bool:
        i = bisect.bisect_left(self.fired, key)
        return i < len(self.fired) and self.fired[i] == key

    def mark_fired(self, key: str) -> None:
        i = bisect.bisect_left(self.fired, key)
        self.fired = (*self.fired[:i], key, *self.fired[i:])


_PAYLOAD = {
    StepCompleted: lambda e: (e.step, None, None),
    Suspended: lambda e: (e.procedure, None, e.planned_days),
    ExtensionGranted: lambda e: (None, e.approved_by, e.days),
    FeeAssessed: lambda e: (e.fee_code, None, e.amount),
    FeePaid: lambda e: (e.fee_code, e.channel, e.amount),
    FeeWaived: lambda e: (e.fee_code, e.approval_ref, e.amount),
    FeeRefunded: lambda e: (e.fee_code, None, e.amount),
    Decided: lambda e: (e.outcome, None, None),
    Rated: lambda e: (None, None, e.level),
    ComplaintFiled: lambda e: (e.complaint_id, None, None),
    ComplaintResolved: lambda e: (e.complaint_id, None, None),
}
# event class -> (its type tag, what its fact keeps): one lookup per event instead of a property and a get
_FACT_OF = {cls: (tag, _PAYLOAD.get(cls)) for tag, cls in EVENT_TYPES.items()}


def to_fact(ev: AnyEvent, t: float) -> Fact:
    """Reduce an event to the fields rules read; ``t`` is its occurred_at as epoch seconds."""
    tag, payload = _FACT_OF[type(ev)]
    officer = ev.officer_id
    # Officer ids, step names, fee codes and channels repeat across cases: one copy each in memory.
    if officer is not None:
        officer = intern(officer)
    if payload is None:  # submitted, accepted, completed, delivered, …: nothing beyond time and officer
        return Fact(t, tag, ev.event_id, officer)
    s1, s2, num = payload(ev)
    return Fact(t, tag, ev.event_id, officer, intern(s1) if s1 is not None else None,
                intern(s2) if s2 is not None else None, num)


def first_step(facts: Sequence[Fact], step: str) -> Fact | None:
    """The fact that first completed ``step`` (the one ``Derived.steps`` holds the time of)."""
    for f in facts:  # facts are in (time, event id) order, as fold saw them
        if f.type == "step_completed" and f.s1 == step:
            return f
    return None


def _without_trailing_nones(fields: Sequence[str | None]) -> tuple[str | None, ...]:
    """An intake's fields as ``Intake.fields`` keeps them (``Intake.field`` reads a missing one as None)."""
    end = len(fields)
    while end and fields[end - 1] is None:
        end -= 1
    return tuple(fields[:end])


_NONES: tuple[None, ...] = (None,) * len(INFO_FIELDS)


# An intake's rank: (0 accepted | 1 submitted, event time, event id); the smaller rank wins. Read in C
# (sorting a case's intakes asks it of each).
_rank = operator.attrgetter("kind", "t", "eid")


def take_info(info: CaseInfo, ev: Submitted | Accepted, t: float) -> bool:
    """Record an intake event (``t``: its time, shared with its fact) and re-derive the case identity;
    True when the best intake changed."""
    a = ev.applicant
    accepted = isinstance(ev, Accepted)
    # Item, department, window and region repeat across cases: one copy of each string in memory.
    code, dept, window, region = ev.item_code, ev.department, ev.window, ev.region_code
    given = (intern(code) if code is not None else None, intern(dept) if dept is not None else None,
             intern(window) if window is not None else None, intern(region) if region is not None else None)
    if a is not None:
        given = (*given, a.name, a.id_number, a.phone)
    fields = given if given[-1] is not None else _without_trailing_nones(given)
    rec = Intake(0 if accepted else 1, t, ev.event_id, fields,
                 ev.due_at.timestamp() if accepted and ev.due_at is not None else None)  # type: ignore[union-attr]
    intakes = info.intakes
    if not intakes:  # the first intake of the case (the usual one): its fields are the case's
        best = rec
        info.intakes = (rec,)
        merged = [*fields, *_NONES[len(fields):]]
        changed = True
    else:
        best_before = _rank(intakes[0])
        intakes = info.intakes = tuple(sorted((*intakes, rec), key=_rank))
        best = intakes[0]
        merged = [*best.fields, *_NONES[len(best.fields):]]
        for r in intakes[1:]:  # each field from the best intake that gives it
            for i, v in enumerate(r.fields):
                if merged[i] is None:
                    merged[i] = v
        changed = _rank(best) != best_before
    (info.item_code, info.department, info.window, info.region_code,
     info.applicant_name, info.applicant_id_number, info.applicant_phone) = merged
    info.from_accepted = best.kind == 0
    info.due_at = best.due_at
    return changed


_AFTER_WITHDRAWAL_OK = frozenset({"fee_refunded", "rated", "rating_resolved", "complaint_filed",
                                  "complaint_resolved", "withdrawn"})


def fold(d: Derived, f: Fact) -> str | None:
    """Apply one fact to the summary, in event-time order. Returns a note for an impossible transition."""
    if f.t > d.last_t:
        d.last_t = f.t
    typ = f.type
    note = _FOLD[typ](d, f)
    if d.withdrawn_t is not None and typ not in _AFTER_WITHDRAWAL_OK and note is None:
        note = f"`{typ}` after the case was withdrawn (撤回)"
    return note


def _fold_submitted(d: Derived, f: Fact) -> str | None:
    if d.submitted_t is None:
        d.submitted_t = f.t
    return None


def _fold_accepted(d: Derived, f: Fact) -> str | None:
    note = None
    if d.accepted_t is None:
        d.accepted_t = f.t
    else:
        note = "a second `accepted` for the same case"
    if d.completed_t is not None:
        note = "`accepted` after the case was completed"
    return note


def _fold_rejected(d: Derived, f: Fact) -> str | None:
    if d.rejected_t is None:
        d.rejected_t = f.t
    return None


def _fold_supplement_requested(d: Derived, f: Fact) -> str | None:
    d.supplement_count += 1
    if d.open_pause is not None and d.open_pause.kind == "supplement":
        return "`supplement_requested` while a supplement is already outstanding"
    d.pauses = (*d.pauses, Pause(kind="supplement", start=f.t, end=None, eid=f.eid))
    return None


def _fold_supplement_received(d: Derived, f: Fact) -> str | None:
    p = _open(d, "supplement")
    if p is None:
        return "`supplement_received` without an outstanding `supplement_requested`"
    p.end = f.t
    return None


def _fold_suspended(d: Derived, f: Fact) -> str | None:
    if _open(d, "suspension") is not None:
        return "`suspended` while already suspended"
    d.pauses = (*d.pauses, Pause(kind="suspension", start=f.t, end=None, eid=f.eid,
                                 planned_days=f.num if isinstance(f.num, int) else None))
    return None


def _fold_resumed(d: Derived, f: Fact) -> str | None:
    p = _open(d, "suspension")
    if p is None:
        return "`resumed` without a `suspended`"
    p.end = f.t
    return None


def _fold_extension(d: Derived, f: Fact) -> str | None:
    d.extension_count += 1
    if d.extension_count == 1:
        d.extension_days = int(f.num or 0)
        return None
    return "a second `extension_granted`: 第42条 allows one extension; ignored"


def _fold_step(d: Derived, f: Fact) -> str | None:
    if f.s1 not in d.steps:
        d.steps[f.s1] = f.t  # type: ignore[index]
    return None


def _fold_fee(d: Derived, f: Fact) -> str | None:
    fold_fee(d, f)
    return None


def _fold_decided(d: Derived, f: Fact) -> str | None:
    if d.decided_t is None:
        d.decided_t, d.outcome = f.t, f.s1
        if d.close_eid is None:
            d.close_eid, d.close_t, d.close_officer = f.eid, f.t, f.officer
    return None


def _fold_completed(d: Derived, f: Fact) -> str | None:
    if d.completed_t is not None:
        return "a second `completed`"
    d.completed_t = f.t
    if d.close_eid is None:
        d.close_eid, d.close_t, d.close_officer = f.eid, f.t, f.officer
    return None


def _fold_delivered(d: Derived, f: Fact) -> str | None:
    if d.delivered_t is None:
        d.delivered_t, d.delivered_eid = f.t, f.eid
    return None


def _fold_withdrawn(d: Derived, f: Fact) -> str | None:
    if d.withdrawn_t is None:
        d.withdrawn_t = f.t
    return None


def _quality(d: Derived) -> QualityLog:
    q = d.quality
    if q is None:
        q = d.quality = QualityLog()
    return q


def _fold_rated(d: Derived, f: Fact) -> str | None:
    _quality(d).ratings.append((f.t, f.eid, int(f.num or 0)))
    return None


def _fold_rating_resolved(d: Derived, f: Fact) -> str | None:
    _quality(d).rating_resolved.append(f.t)
    return None


def _fold_complaint_filed(d: Derived, f: Fact) -> str | None:
    _quality(d).complaints.append((f.t, f.eid, f.s1))
    return None


def _fold_complaint_resolved(d: Derived, f: Fact) -> str | None:
    _quality(d).complaint_resolved.append((f.t, f.s1))
    return None


# One entry per event type (a lookup, not a chain of comparisons: fold runs once per event).
_FOLD = {
    "submitted": _fold_submitted, "accepted": _fold_accepted, "intake_rejected": _fold_rejected,
    "supplement_requested": _fold_supplement_requested, "supplement_received": _fold_supplement_received,
    "suspended": _fold_suspended, "resumed": _fold_resumed, "extension_granted": _fold_extension,
    "step_completed": _fold_step, "fee_assessed": _fold_fee, "fee_paid": _fold_fee, "fee_waived": _fold_fee,
    "fee_refunded": _fold_fee, "decided": _fold_decided, "completed": _fold_completed,
    "delivered": _fold_delivered, "withdrawn": _fold_withdrawn, "rated": _fold_rated,
    "rating_resolved": _fold_rating_resolved, "complaint_filed": _fold_complaint_filed,
    "complaint_resolved": _fold_complaint_resolved,
}


def fold_fee(d: Derived, f: Fact) -> None:
    led = d.fee
    if led is None:
        led = d.fee = FeeLedger()
    code, amount = f.s1, f.num
    if f.type == "fee_assessed":
        led.assessed[code] = led.assessed.get(code, 0) + 1  # type: ignore[index]
        led.assessed_first.setdefault(code, f.t)  # type: ignore[arg-type]
        led.assessed_total += amount  # type: ignore[operator]
    elif f.type == "fee_paid":
        led.paid_total += amount  # type: ignore[operator]
        led.settled.setdefault(code, f.t)  # type: ignore[arg-type]
    elif f.type == "fee_waived":
        led.waived_total += amount  # type: ignore[operator]
        led.settled.setdefault(code, f.t)  # type: ignore[arg-type]
    else:  # fee_refunded: no amount means the whole balance
        led.refunded_total += amount if amount is not None else led.paid_total - led.refunded_total  # type: ignore[operator]
        if led.refunded_t is None and led.refunded_total >= led.paid_total:
            led.refunded_t = f.t


def _open(d: Derived, kind: str) -> Pause | None:
    for p in reversed(d.pauses):
        if p.kind == kind and p.end is None:
            return p
    return None


_state_enc = msgspec.msgpack.Encoder()
_state_dec = msgspec.msgpack.Decoder(CaseState)


def encode_state(state: CaseState) -> bytes:
    """Compact binary form for the Faust table and checkpoints (msgpack)."""
    return _state_enc.encode(state)


class StateLayoutError(ValueError):
    """A stored case state this code cannot read: written by another layout of ``CaseState``, or damaged."""


class _Version(msgspec.Struct):
    v: int = 0


_version_dec = msgspec.msgpack.Decoder(_Version)


def decode_state(raw: bytes) -> CaseState:
    """Read a stored state of this layout or of layout 1 (converted); any other is a clear error.

    A worker restarted on a new release finds its table's changelog full of states written by the old
    one, so each layout change comes with a conversion here (tested on a state the old release wrote:
    ``tests/fixtures/case_state_v1_ad4fc31.msgpack``). An unreadable state stops the worker with this
    message rather than a decoder trace, and nothing is overwritten.
    """
    try:
        return _state_dec.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        problem: Exception = exc
    try:
        found: int | str = _version_dec.decode(raw).v
    except (msgspec.ValidationError, msgspec.DecodeError):
        found = "unreadable"
    if found == 1:
        try:
            return _from_v1(msgspec.msgpack.decode(raw))
        except (msgspec.ValidationError, TypeError, ValueError, IndexError, KeyError) as exc:
            problem = exc
    raise StateLayoutError(
        f"stored case state (layout version {found}) cannot be read by this version of esupervision "
        f"(layout version {STATE_VERSION}): {problem}. Run the version that wrote it; the stored state is "
        f"left as it is.") from problem


def _from_v1(old: dict) -> CaseState:
    """Layout 1 (up to ad4fc31) → this one. Facts lose ``seq`` and ``rec`` (the latter is None once an
    event is applied), intakes are flattened, and the summary is folded again from the facts."""
    facts = [[f[0], *f[2:8]] for f in old.get("facts", [])]  # t, (seq), type, eid, officer, s1, s2, num, (rec)
    info = list(old.get("info", []))
    if len(info) > 10:
        info[10] = [[rank[0], rank[1], rank[2], _without_trailing_nones(fields), due_at]
                    for rank, fields, due_at in info[10]]
    new = {k: v for k, v in old.items() if k not in ("facts", "info", "d")}
    state = msgspec.convert({**new, "v": STATE_VERSION, "facts": facts, "info": info}, CaseState, strict=False)
    times = {f.eid: f.t for f in state.facts}
    for i in state.info.intakes:  # one float object per time, shared with the fact, as take_info does
        i.t = times.get(i.eid, i.t)
    for f in state.facts:
        fold(state.d, f)
    return state
