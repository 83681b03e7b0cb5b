"""The supervision engine: one pure function pair every driver calls.

``apply(state, event)`` folds an event into a case and returns what it showed; ``advance(state, now)``
lets time pass and returns the deadlines that ran out. No I/O, no wall clock, no globals: ``now``
is always an argument, so the live stream, the embedded runner and an audit replay, given the same
events, produce the same findings with the same ids.

The engine takes ownership of the ``CaseState`` passed in and returns it updated (copying the state of
every case on every event would cost more than all the rules together); callers keep one state per case.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import msgspec

from rules import fees, procedure, quality, timeouts
from rules.calendar import CalendarError, WorkCalendar
from rules.catalog import Catalog, CatalogSet, Item, load_catalog
from rules.clock import Clock, china_date, day_end, day_number, instant
from rules.config import RuleConfig, load_rule_config
from rules.context import CaseContext, Deadline
from rules.facts import CaseFacts
from rules.findings import Finding, Note
from rules.state import (
    CaseState,
    Derived,
    Fact,
    decode_state,
    encode_state,
    fold,
    take_info,
    to_fact,
)
from schemas.events import Accepted, AnyEvent, Submitted

__all__ = ["Engine", "Outcome", "CaseState", "encode_state", "decode_state"]

Handler = Callable[[CaseContext, Fact], None]

_EVENT_RULES: dict[str, list[Handler]] = {}
for _module in (fees, procedure, quality):
    for _type, _handlers in _module.ON_EVENT.items():
        _EVENT_RULES.setdefault(_type, []).extend(_handlers)
_ANY_RULES: list[Callable[[CaseContext, Fact, AnyEvent], None]] = list(procedure.ON_ANY)
DeadlineRule = Callable[[CaseContext, list[Deadline]], None]
_FAMILIES: dict[str, DeadlineRule] = {
    "timeouts": timeouts.deadlines,
    "steps": timeouts.step_deadlines,
    "fees": fees.deadlines,
    "procedure": procedure.deadlines,
    "quality": quality.deadlines,
}
_ALL = tuple(_FAMILIES)
_LIFECYCLE = ("timeouts", "steps", "fees", "procedure")
# Which deadline families an event can move. Recomputing only those keeps the hot path short: most
# events (steps, fees, ratings) touch one or two families.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "submitted": _ALL, "accepted": _ALL,
    "intake_rejected": _LIFECYCLE, "withdrawn": _LIFECYCLE, "completed": _LIFECYCLE,
    "decided": ("timeouts", "fees", "procedure"),  # step limits run to completion, not to the decision
    "supplement_requested": ("timeouts", "steps"), "supplement_received": ("timeouts", "steps"),
    "suspended": ("timeouts", "steps"), "resumed": ("timeouts", "steps"),
    "extension_granted": ("timeouts",),
    "step_completed": ("steps",),
    "fee_assessed": ("fees",), "fee_paid": ("fees",), "fee_waived": ("fees",), "fee_refunded": ("fees",),
    "delivered": ("fees",),
    "rated": ("quality",), "rating_resolved": ("quality",),
    "complaint_filed": ("quality",), "complaint_resolved": ("quality",),
}

# A step completed after the case closed can still satisfy the close checks (SKIPPED_STEP reads the steps
# done before the close); before the close no procedure deadline reads the steps.
_TRIGGERS_CLOSED: dict[str, tuple[str, ...]] = {**_TRIGGERS, "step_completed": ("steps", "procedure")}

_INTAKES = (Submitted, Accepted)


_FAMILY_RULES = tuple(_FAMILIES.values())
_FAMILY_INDEX = {name: i for i, name in enumerate(_FAMILIES)}
_TRIGGER_INDEXES = {typ: tuple(_FAMILY_INDEX[f] for f in fams) for typ, fams in _TRIGGERS.items()}
_TRIGGER_INDEXES_CLOSED = {typ: tuple(_FAMILY_INDEX[f] for f in fams) for typ, fams in _TRIGGERS_CLOSED.items()}
_ALL_INDEXES = tuple(range(len(_FAMILIES)))
_N_FAMILIES = len(_FAMILIES)


def _pending(state: CaseState, deadlines: list[Deadline]) -> float | None:
    """The earliest deadline of a family that may still fire (not met, not fired)."""
    best: float | None = None
    fired = state.fired  # most cases never fired anything: skip building the keys
    for dl in deadlines:
        at = dl.at
        if best is not None and at >= best:
            continue
        met = dl.satisfied
        if met is not None and met <= at:
            continue
        if fired and state.has_fired(f"{dl.rule}|{dl.occurrence}"):
            continue
        best = at
    return best


def _earliest(dues: list[float | None]) -> float | None:
    best: float | None = None
    for x in dues:
        if x is not None and (best is None or x < best):
            best = x
    return best


class Outcome(msgspec.Struct):
    """What one ``apply``/``advance`` returns (a struct: cheaper to make than a NamedTuple, once per event)."""

    state: CaseState
    findings: list[Finding]
    notes: list[Note]


class Engine:
    def __init__(self, catalogs: CatalogSet | Catalog, calendar: WorkCalendar, config: RuleConfig):
        self.catalogs = catalogs if isinstance(catalogs, CatalogSet) else CatalogSet.single(catalogs)
        self.calendar = calendar
        self.clock = Clock(calendar)
        self.config = config
        # (catalog version, item code) -> (catalog, item): resolved once, not on every event of every case
        self._resolved: dict[tuple[str | None, str | None], tuple[Catalog | None, Item | None]] = {}
        self._in_force: dict[int, str] = {}  # China day number -> catalog version in force that day

    @classmethod
    def default(cls, catalog_path: str | None = None, config_path: str | None = None) -> Engine:
        """The shipped catalog, calendar and thresholds (or the files given)."""
        # A worker must not stop on an event dated 2030: years no calendar covers count Monday–Friday,
        # and the calendar logs that it does so.
        return cls(CatalogSet.single(load_catalog(catalog_path)), WorkCalendar(fallback="weekends"),
                   load_rule_config(config_path))

    # -- the two pure steps -------------------------------------------------------------------

    def new_state(self, case_id: str) -> CaseState:
        return CaseState(case_id=case_id)

    def apply(self, state: CaseState | None, event: AnyEvent, t: float | None = None) -> Outcome:
        """Fold ``event`` into the case (``t``: its ``occurred_at`` as epoch seconds, if the driver has it)."""
        if state is None:
            state = CaseState(case_id=event.case_id)
        findings: list[Finding] = []
        notes: list[Note] = []
        eid = event.event_id
        for f in state.facts:  # every applied event is a fact: the facts are the duplicate index (no second copy)
            if f.eid == eid:
                notes.append(Note(kind="duplicate_event", case_id=state.case_id, event_id=eid,
                                  message=f"event {eid} was already applied; the repeat changes nothing"))
                return Outcome(state, findings, notes)
        # The clock is not moved by events: only drivers advance it (ticker, replay heap, --until).
        # So events of one case arriving shuffled, before the clock reaches their deadlines, give
        # the same findings as in order.

        if t is None:
            t = instant(event.occurred_at)
        rejudge = False
        if isinstance(event, _INTAKES):
            rejudge = self._take_intake(state, event, notes, t)
        elif state.d.submitted_t is None and state.d.accepted_t is None:
            notes.append(Note(kind="no_intake", case_id=state.case_id, event_id=event.event_id,
                              message=f"`{event.event_type}` for case {state.case_id} before any `submitted` or "
                                      f"`accepted` event; kept, rules needing the item wait for the intake"))

        fact = to_fact(event, t)
        state.seq += 1  # events applied, in arrival order
        facts = state.facts
        last = facts[-1] if facts else None
        if not rejudge and (last is None or last.t < t or (last.t == t and last.eid <= eid)):
            state.facts = (*facts, fact)  # a tuple: no spare slots (cases have ~5-15 facts)
            todo: tuple[Fact, ...] = (fact,)
            changed = (_TRIGGER_INDEXES if state.d.close_t is None else _TRIGGER_INDEXES_CLOSED)[fact.type]
        else:
            start = bisect.bisect_right([(f.t, f.eid) for f in facts], (fact.t, fact.eid))
            facts = state.facts = (*facts[:start], fact, *facts[start:])
            state.d = Derived()
            for f in facts[:start]:
                fold(state.d, f)
            todo = facts[start:]
            changed = _ALL_INDEXES

        ctx = self._context(state, findings)
        for f in todo:
            problem = fold(state.d, f)
            if problem is not None and f is fact:
                notes.append(Note(kind="impossible_transition", case_id=state.case_id, event_id=f.eid,
                                  message=problem))
            for rule in _EVENT_RULES.get(f.type, ()):
                rule(ctx, f)
            if f is fact:
                # Rules on the event alone (补录: recorded_at) are judged once, on arrival: the state
                # does not keep the recorded time, only what later judgements need.
                for rule in _ANY_RULES:
                    rule(ctx, f, event)

        # Only the families this event can move are recomputed; each keeps just its earliest pending
        # instant (no closures or lists kept per case: state for 100,000 open cases must stay small).
        dues = state.dues
        if len(dues) != _N_FAMILIES:
            dues[:] = [None] * _N_FAMILIES
            changed = _ALL_INDEXES
        for i in changed:
            out: list[Deadline] = []
            try:
                _FAMILY_RULES[i](ctx, out)
            except CalendarError as exc:  # a date no calendar covers: say so, never crash the worker
                notes.append(Note(kind="out_of_calendar", case_id=state.case_id, event_id=event.event_id,
                                  message=f"deadlines not computed: {exc}"))
                out = []
            dues[i] = _pending(state, out) if out else None
        nd = None
        for x in dues:  # _earliest, inlined
            if x is not None and (nd is None or x < nd):
                nd = x
        state.next_due = nd
        if nd is not None and nd <= state.now:
            self._fire_due(state, state.now, findings, ctx)
        return Outcome(state, findings, notes)

    def advance(self, state: CaseState, now: datetime | float) -> Outcome:
        """Let the case's clock run to ``now``; deadlines that passed fire with ``fired_at`` = deadline."""
        t = now.timestamp() if isinstance(now, datetime) else float(now)
        findings: list[Finding] = []
        if t > state.now:
            state.now = t
        if state.next_due is not None and state.next_due <= t:
            self._fire_due(state, t, findings, self._context(state, findings))
        return Outcome(state, findings, [])

    def next_due(self, state: CaseState) -> datetime | None:
        """The earliest pending clock deadline: drivers keep an index of these instead of scanning cases."""
        if state.next_due is None:
            return None
        from datetime import UTC
        return datetime.fromtimestamp(state.next_due, UTC)

    # -- internals -----------------------------------------------------------------------------

    def _catalog_for(self, state: CaseState) -> Catalog | None:
        v = state.info.catalog_version
        return self.catalogs.version(v) if v is not None else None

    def _context(self, state: CaseState, out: list[Finding]) -> CaseContext:
        info = state.info
        key = (info.catalog_version, info.item_code)
        found = self._resolved.get(key)
        if found is None:
            cat = self._catalog_for(state)
            found = self._resolved[key] = (cat, cat.item(info.item_code) if cat is not None else None)
        return CaseContext(state, state.d, found[0], found[1], self.clock, self.config, out)

    def _take_intake(self, state: CaseState, event: Submitted | Accepted, notes: list[Note], t: float) -> bool:
        """Returns True when the case's identity (item, version) changed and earlier facts need re-judging."""
        info = state.info
        code_before, version_before = info.item_code, info.catalog_version
        if take_info(info, event, t) or version_before is None:
            # the catalog in force when the case was accepted (or, before that, submitted)
            at = info.intakes[0].t
            day = day_number(at)  # versions change at most daily
            version = self._in_force.get(day)
            if version is None:
                version = self._in_force[day] = self.catalogs.in_force(china_date(at)).version
            info.catalog_version = version
        code = info.item_code
        if code is not None and code != code_before:
            cat = self.catalogs.version(info.catalog_version)  # type: ignore[arg-type]
            if cat is not None and cat.item(code) is None:
                notes.append(Note(kind="unknown_item", case_id=state.case_id, event_id=event.event_id,
                                  message=f"item code {code!r} is not in catalog {cat.version}; only the "
                                          f"statutory, intake and quality rules apply to case {state.case_id}"))
        return (code != code_before or info.catalog_version != version_before) and len(state.facts) > 0

    def deadlines(self, state: CaseState) -> list[Deadline]:
        """Every clock deadline of the case as its facts stand (computed afresh)."""
        ctx = self._context(state, [])
        out: list[Deadline] = []
        for rule in _FAMILY_RULES:
            try:
                rule(ctx, out)
            except CalendarError:
                continue
        return out

    def _fire_due(self, state: CaseState, now: float, findings: list[Finding], ctx: CaseContext) -> None:
        """Fire every deadline passed by ``now``; recompute each family's next pending instant.

        Reached only when something may be due, so recomputing every family here costs little overall.
        """
        dues = state.dues
        if len(dues) != len(_FAMILY_RULES):
            dues[:] = [None] * len(_FAMILY_RULES)
        due: list[Deadline] = []
        for i, rule in enumerate(_FAMILY_RULES):
            out: list[Deadline] = []
            try:
                rule(ctx, out)
            except CalendarError:
                out = []
            later: list[Deadline] = []
            for dl in out:
                if dl.satisfied is not None and dl.satisfied <= dl.at:
                    continue
                if dl.at <= now:
                    if not state.has_fired(f"{dl.rule}|{dl.occurrence}"):
                        due.append(dl)
                else:
                    later.append(dl)
            dues[i] = _pending(state, later)
        if due:
            due.sort(key=lambda x: (x.at, x.rule, x.occurrence))
            for dl in due:
                message, basis = dl.message()
                ctx.raise_finding(dl.rule, dl.occurrence, dl.at, message, basis, officer=dl.officer,
                                  deadline=dl.at)
        state.next_due = _earliest(dues)

    # -- facts for storage ---------------------------------------------------------------------

    def facts(self, state: CaseState) -> CaseFacts:
        from datetime import UTC

        def ts(x: float | None) -> datetime | None:
            return datetime.fromtimestamp(x, UTC) if x is not None else None

        d, info = state.d, state.info
        ctx = self._context(state, [])  # one context: it already resolved the catalog version and item
        item = ctx.item
        promised_due, statutory_due = timeouts.due_instants(ctx)
        if item is not None and item.kind == "on_the_spot" and d.accepted_t is not None:
            promised_due = day_end(d.accepted_t)  # 即办件: the day it was accepted
        start = timeouts.clock_start(ctx)
        on_time = None
        if d.completed_t is not None:
            on_time = promised_due is None or d.completed_t <= promised_due
        if d.withdrawn_t is not None:
            status = "withdrawn"
        elif d.rejected_t is not None:
            status = "rejected"
        elif d.completed_t is not None:
            status = "completed"
        elif d.decided_t is not None:
            status = "decided"
        elif d.open_pause is not None:
            status = "paused"
        elif d.accepted_t is not None:
            status = "accepted"
        elif d.submitted_t is not None:
            status = "submitted"
        else:
            status = "unknown"
        officers = tuple(sorted({f.officer for f in state.facts if f.officer}))
        paused_days = 0
        if d.pauses:
            from rules.clock import pause_view
            pv = pause_view(d)
            paused_days = sum(1 for day in pv.dates if self.calendar.is_working_day(day))
        return CaseFacts(
            case_id=state.case_id, version=len(state.facts), status=status,
            item_code=info.item_code, item_name=item.name if item else None, item_kind=item.kind if item else None,
            department=info.department or (item.department if item else None),
            window=info.window or (item.window if item else None), region_code=info.region_code,
            catalog_version=info.catalog_version, applicant_name=info.applicant_name,
            applicant_id_number=info.applicant_id_number, applicant_phone=info.applicant_phone,
            officers=officers, submitted_at=ts(d.submitted_t), accepted_at=ts(d.accepted_t),
            clock_start_at=ts(start),
            promised_due_at=ts(promised_due), statutory_due_at=ts(statutory_due),
            decided_at=ts(d.decided_t), outcome=d.outcome, completed_at=ts(d.completed_t),
            delivered_at=ts(d.delivered_t), paused_working_days=paused_days,
            supplement_count=d.supplement_count, extension_days=d.extension_days,
            fee_assessed=Decimal(d.assessed_total), fee_paid=Decimal(d.paid_total),
            fee_waived=Decimal(d.waived_total), fee_refunded=Decimal(d.refunded_total),
            rating_level=d.ratings[-1][2] if d.ratings else None, complaint_count=len(d.complaints),
            on_time=on_time, last_event_at=ts(d.last_t) or datetime.fromtimestamp(0, UTC),
        )
