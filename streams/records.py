"""Byte layouts of what the live driver writes to Kafka: table records, warehouse batches, dead letters.

* **State record** (the table value, and the changelog record): a 14-byte header — version, the
  partition the case lives in, its next deadline, its status — then the engine's own ``encode_state``
  bytes. The header lets a worker rebuild its deadline index (and count its cases by status) after a
  rebalance without decoding any state, and tells which partition a case belongs to even in Faust's
  in-memory store, which keeps every partition's keys in one dict.
* **Warehouse batch** (``warehouse-batches``): msgpack of the raw events of a supervise batch (bytes as
  received, with their Kafka timestamp, partition and offset) and the facts, findings and notes they
  produced. One message carries hundreds of rows, so the sink costs one Kafka record per batch rather
  than one per row; the events are the original bytes, so the warehouse stores them as received.
* **Dead letter** (``case-events-dlq``): the original key and value untouched (an operator can
  re-publish it as is once the source is fixed), the reason and the source coordinates in headers.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import msgspec

from rules.facts import CaseFacts
from rules.findings import Finding, Note

RECORD_VERSION = 1
_HEADER = struct.Struct(">BidB")  # version, partition, next deadline (epoch seconds; NaN: none), status
HEADER_SIZE = _HEADER.size
STATUSES: tuple[str, ...] = ("unknown", "submitted", "accepted", "paused", "decided", "completed", "rejected",
                             "withdrawn")  # rules.facts.Status; index 0 for anything else
_STATUS_INDEX = {s: i for i, s in enumerate(STATUSES)}

DLQ_REASON = "esup-reason"
DLQ_SOURCE = "esup-source"  # "topic/partition/offset"
DLQ_RECEIVED = "esup-received-ms"


class RecordError(ValueError):
    """A table value this code did not write (another version, or foreign data on the changelog)."""


def encode_record(partition: int, due: float | None, state: bytes, status: str = "unknown") -> bytes:
    return _HEADER.pack(RECORD_VERSION, partition, math.nan if due is None else due,
                        _STATUS_INDEX.get(status, 0)) + state


def record_header(value: bytes) -> tuple[int, float | None]:
    """(partition, next deadline) of a stored record, without touching the state bytes."""
    partition, due, _ = record_meta(value)
    return partition, due


def record_meta(value: bytes) -> tuple[int, float | None, str]:
    """(partition, next deadline, status) of a stored record."""
    if len(value) < HEADER_SIZE:
        raise RecordError(f"state record of {len(value)} bytes is shorter than its header")
    version, partition, due, status = _HEADER.unpack_from(value)
    if version != RECORD_VERSION:
        raise RecordError(f"state record version {version}, this worker reads version {RECORD_VERSION}")
    return partition, None if math.isnan(due) else due, STATUSES[status] if status < len(STATUSES) else "unknown"


def record_state(value: bytes) -> bytes:
    return bytes(memoryview(value)[HEADER_SIZE:])


class RawEvent(msgspec.Struct, array_like=True, frozen=True):
    raw: bytes
    received_ms: int  # Kafka record timestamp: the same on every replay, so rows collapse
    partition: int
    offset: int

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.received_ms / 1000, UTC)


class WarehouseBatch(msgspec.Struct, array_like=True, kw_only=True):
    events: list[RawEvent] = []
    facts: list[CaseFacts] = []
    findings: list[Finding] = []
    notes: list[Note] = []

    def rows(self) -> int:
        return len(self.events) + len(self.facts) + len(self.findings) + len(self.notes)


_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(WarehouseBatch)


def encode_batch(batch: WarehouseBatch) -> bytes:
    return _batch_encoder.encode(batch)


def decode_batch(data: bytes) -> WarehouseBatch:
    return _batch_decoder.decode(data)


# Rough encoded sizes, used only to keep a message under the broker's limit.
_FACT_BYTES = 900
_FINDING_BYTES = 900
_NOTE_BYTES = 300
_EVENT_OVERHEAD = 24


def split_batch(batch: WarehouseBatch, limit: int) -> list[WarehouseBatch]:
    """Cut a batch into pieces whose estimated encoded size stays under ``limit`` bytes."""
    out: list[WarehouseBatch] = []
    cur = WarehouseBatch(events=[], facts=[], findings=[], notes=[])
    size = 0

    def room(n: int) -> None:
        nonlocal cur, size
        if size and size + n > limit:
            out.append(cur)
            cur = WarehouseBatch(events=[], facts=[], findings=[], notes=[])
            size = 0
        size += n

    for ev in batch.events:
        room(len(ev.raw) + _EVENT_OVERHEAD)
        cur.events.append(ev)
    for f in batch.facts:
        room(_FACT_BYTES)
        cur.facts.append(f)
    for fi in batch.findings:
        room(_FINDING_BYTES + len(fi.message) * 3)
        cur.findings.append(fi)
    for n in batch.notes:
        room(_NOTE_BYTES + len(n.message) * 3)
        cur.notes.append(n)
    if cur.rows():
        out.append(cur)
    return out


def dlq_headers(reason: str, topic: str, partition: int, offset: int, received_ms: int) -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON, reason.encode("utf-8")[:4096]),
        (DLQ_SOURCE, f"{topic}/{partition}/{offset}".encode()),
        (DLQ_RECEIVED, str(received_ms).encode()),
    ]
