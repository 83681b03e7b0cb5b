"""What the agents do, as plain functions and one plain class: no Kafka, no Faust, testable alone.

``validate`` splits a batch of input records into events and dead letters. ``Supervisor`` applies
events to case states with the engine, advances due cases for the ticker, and returns ``Effects``:
everything a batch or a tick produced that must be made durable — dead letters, findings, warehouse
rows, and the new state records. It never writes anywhere itself; ``streams.commit`` does, in the
one order that keeps at-least-once delivery lossless.

State lives in the Faust table (``table``: the store's mapping of case key -> state record bytes),
mirrored by a bounded cache of decoded ``CaseState`` objects, because decoding a state costs more
than applying an event to it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any

from rules.clock import instant
from rules.findings import Finding, Note
from schemas.events import InvalidEvent, decode_event
from streams.clock import PartitionClocks
from streams.deadlines import DeadlineIndex
from streams.order import Admission, ReadOrder
from streams.records import RawEvent, RecordError, WarehouseBatch, encode_record, record_meta, record_state

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InRecord:
    """One input record as the broker delivered it."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    timestamp_ms: int


@dataclass
class Effects:
    """The durable output of one batch or tick, in the shapes the outputs need."""

    dead: list[tuple[InRecord, str]] = field(default_factory=list)  # -> case-events-dlq
    findings: list[Finding] = field(default_factory=list)  # -> findings
    received: list[float | None] = field(default_factory=list)  # per finding: its event's broker time (s)
    warehouse: dict[int, WarehouseBatch] = field(default_factory=dict)  # partition -> warehouse-batches
    states: dict[int, dict[bytes, bytes]] = field(default_factory=dict)  # partition -> key -> record
    events: int = 0  # valid events applied
    admission: Admission = field(default_factory=Admission)  # records not applied (read again) and why
    decoded: list[Any] = field(default_factory=list)  # events and InvalidEvents, for the metrics
    notes: list[Note] = field(default_factory=list)

    def batch_for(self, partition: int) -> WarehouseBatch:
        b = self.warehouse.get(partition)
        if b is None:
            b = self.warehouse[partition] = WarehouseBatch(events=[], facts=[], findings=[], notes=[])
        return b

    def empty(self) -> bool:
        return not (self.dead or self.findings or self.warehouse or self.states)


def validate(records: Iterable[InRecord], naive_tz: timezone | None = None,
             ) -> tuple[list[tuple[InRecord, Any]], list[tuple[InRecord, InvalidEvent]]]:
    """Decode each record against the event contract: (events, dead letters with their reason)."""
    good: list[tuple[InRecord, Any]] = []
    bad: list[tuple[InRecord, InvalidEvent]] = []
    for rec in records:
        item = decode_event(rec.value, position=rec.offset, naive_tz=naive_tz)
        if isinstance(item, InvalidEvent):
            bad.append((rec, item))
        else:
            good.append((rec, item))
    return good, bad


class Supervisor:
    """The engine over a partitioned state table, with the deadline index and partition clocks."""

    def __init__(self, engine: Any, table: MutableMapping[bytes, bytes], *, owned: Callable[[], set[int]],
                 clocks: PartitionClocks, cache_size: int = 200_000, naive_tz: timezone | None = None,
                 encode_state: Callable[[Any], bytes] | None = None,
                 decode_state: Callable[[bytes], Any] | None = None) -> None:
        if encode_state is None or decode_state is None:
            from rules.engine import decode_state as _dec
            from rules.engine import encode_state as _enc

            encode_state, decode_state = encode_state or _enc, decode_state or _dec
        self.engine = engine
        self.table = table
        self.owned = owned
        self.clocks = clocks
        self.index = DeadlineIndex()
        self.order = ReadOrder(clocks.next_offset)  # where each partition is applied from (streams.order)
        self.cache_size = cache_size
        self.naive_tz = naive_tz
        self._encode_state = encode_state
        self._decode_state = decode_state
        self._cache: dict[str, tuple[int, Any]] = {}
        self.statuses: dict[int, Counter[str]] = {}  # owned partition -> cases by status (rules.facts.Status)
        self.misplaced = 0  # cases found on a partition other than the one their state was written from
        self.key_mismatch = 0  # records whose Kafka key is not their case number

    # ------------------------------------------------------------------------------ ownership
    def assign(self, partitions: Iterable[int]) -> None:
        """Partitions now owned (the table restored): index their deadlines from the stored records.

        Where reading starts is not known here: the consumer tells ``start_reading`` after it has sought."""
        new = {p for p in partitions if not self.index.owns(p)}
        if not new:
            return
        entries: dict[int, list[tuple[str, float | None]]] = {p: [] for p in new}
        statuses: dict[int, Counter[str]] = {p: Counter() for p in new}
        bad = 0
        for key, value in list(self.table.items()):
            if not isinstance(value, bytes | bytearray):
                continue
            try:
                p, due, status = record_meta(value)
            except RecordError:
                bad += 1
                continue
            if p in entries:
                entries[p].append((key.decode("utf-8") if isinstance(key, bytes) else str(key), due))
                statuses[p][status] += 1
        for p in new:
            self.index.rebuild(p, entries[p])
            self.statuses[p] = statuses[p]
        if bad:
            log.warning("state table: %d records in an unknown layout were left out of the deadline index", bad)
        log.info("deadline index: partitions %s, %d cases with a pending deadline",
                 sorted(new), sum(self.index.pending(p) for p in new))

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for p in gone:
            self.index.drop(p)
            self.statuses.pop(p, None)
        self.clocks.forget(gone)
        if gone and self._cache:
            self._cache = {c: v for c, v in self._cache.items() if v[0] not in gone}

    def start_reading(self, partition: int, offset: int) -> None:
        """The consumer reads ``partition`` from ``offset`` now (it was assigned, or sought back)."""
        self.order.start(partition, offset)

    # ------------------------------------------------------------------------------ events
    def apply(self, records: Sequence[InRecord]) -> Effects:
        """Validate and apply one batch of input records, each partition strictly in offset order.

        Records of partitions this worker does not own, and records its reading order holds back
        (``streams.order``: a gap, a copy, before the first seek) are neither applied nor to be
        acknowledged (``eff.admission``); after a gap ``eff.admission.rewind`` names where to read again.
        """
        eff = Effects()
        adm = eff.admission
        owned = None
        order = self.order
        applied: list[InRecord] = []
        for i, rec in enumerate(records):  # raw events first, valid or not: the warehouse stores them as received
            p = rec.partition
            if not self.index.owns(p):
                owned = self.owned() if owned is None else owned
                if p not in owned:
                    adm.hold(i, "moved")
                    continue
                self.assign([p])
            if not order.admit(i, p, rec.offset, adm):
                continue
            applied.append(rec)
            eff.batch_for(p).events.append(RawEvent(rec.value, rec.timestamp_ms, p, rec.offset))
        good, bad = validate(applied, self.naive_tz)
        clocks = self.clocks
        for rec, invalid in bad:
            eff.dead.append((rec, invalid.error))
            eff.decoded.append(invalid)
        touched: dict[str, tuple[int, Any]] = {}
        engine = self.engine
        for rec, ev in good:
            p = rec.partition
            case = ev.case_id
            if rec.key is not None and rec.key != case.encode("utf-8"):
                self.key_mismatch += 1
            hit = touched.get(case)
            state = hit[1] if hit is not None else self._load(case, p)
            out = engine.apply(state, ev)
            self._keep(case, p, out.state)
            touched[case] = (p, out.state)
            if out.findings:
                eff.findings.extend(out.findings)
                eff.received.extend([rec.timestamp_ms / 1000] * len(out.findings))
                eff.batch_for(p).findings.extend(out.findings)
            if out.notes:
                eff.notes.extend(out.notes)
                eff.batch_for(p).notes.extend(out.notes)
            eff.decoded.append(ev)
            clocks.observe(p, instant(ev.occurred_at))
        eff.events = len(good)
        self._finish(touched, eff)
        return eff

    # ------------------------------------------------------------------------------ ticker
    def advance(self, highwater: Callable[[int], int | None], now: float | None = None) -> Effects:
        """Let the due cases of every owned partition run to that partition's clock."""
        eff = Effects()
        touched: dict[str, tuple[int, Any]] = {}
        engine = self.engine
        for p in self.index.partitions():
            t = self.clocks.time_for(p, highwater(p), now)
            if t is None:
                continue
            due = self.index.pop_due(p, t)
            if not due:
                continue
            at = datetime.fromtimestamp(t, UTC)
            for case in due:
                state = self._load(case, p)
                if state is None:
                    continue
                out = engine.advance(state, at)
                self._keep(case, p, out.state)
                touched[case] = (p, out.state)
                if out.findings:
                    eff.findings.extend(out.findings)
                    eff.received.extend([None] * len(out.findings))
                    eff.batch_for(p).findings.extend(out.findings)
                if out.notes:
                    eff.notes.extend(out.notes)
                    eff.batch_for(p).notes.extend(out.notes)
        self._finish(touched, eff)
        return eff

    def status_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.statuses.values():
            total.update(counts)
        return total

    def next_deadline(self) -> float | None:
        ats = [a for a in (self.index.next_at(p) for p in self.index.partitions()) if a is not None]
        return min(ats) if ats else None

    # ------------------------------------------------------------------------------ internals
    def _finish(self, touched: dict[str, tuple[int, Any]], eff: Effects) -> None:
        """New state records, facts and index entries for every case the batch or tick touched."""
        engine, table, index = self.engine, self.table, self.index
        enc = self._encode_state
        statuses = self.statuses
        for case, (p, state) in touched.items():
            nd = engine.next_due(state)
            due = nd.timestamp() if nd is not None else None
            facts = engine.facts(state)
            record = encode_record(p, due, enc(state), facts.status)
            key = case.encode("utf-8")
            counts = statuses.get(p)
            if counts is not None:
                old = table.get(key)
                if old is not None:
                    try:
                        counts[record_meta(old)[2]] -= 1
                    except RecordError:
                        pass
                counts[facts.status] += 1
            table[key] = record
            eff.states.setdefault(p, {})[key] = record
            eff.batch_for(p).facts.append(facts)
            index.set(p, case, due)

    def _load(self, case: str, partition: int) -> Any:
        hit = self._cache.get(case)
        if hit is not None:
            return hit[1]
        value = self.table.get(case.encode("utf-8"))
        if value is None:
            return None
        try:
            stored_p = record_meta(value)[0]
        except RecordError as exc:
            log.error("case %s: stored state unreadable (%s); starting it afresh", case, exc)
            return None
        if stored_p != partition:
            self.misplaced += 1
            if self.misplaced <= 10:
                log.warning("case %s arrives on partition %d but its state was written from partition %d: "
                            "producers must key case-events by case number", case, partition, stored_p)
        state = self._decode_state(record_state(value))
        self._keep(case, partition, state)
        return state

    def _keep(self, case: str, partition: int, state: Any) -> None:
        cache = self._cache
        if case in cache:
            del cache[case]  # re-insert at the end: dict order is the eviction order
        cache[case] = (partition, state)
        if len(cache) > self.cache_size:
            drop = max(1, self.cache_size // 10)
            for c in list(cache)[:drop]:
                del cache[c]
