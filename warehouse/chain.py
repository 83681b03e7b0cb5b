"""Tamper evidence for the raw events: a SHA-256 hash chain per case, and its verification.

Auditors must be able to trust that a case's history in the warehouse is what the approval systems
sent. ClickHouse itself keeps no history of changes, so every stored line is linked into a chain of
its case when it is written:

    hash_1 = SHA-256(GENESIS || raw_1),   hash_i = SHA-256(hash_{i-1} || raw_i)

where ``raw_i`` are the bytes exactly as received and ``i`` is the order in which the lines were
*stored* (an append-only ledger), not the order of their event times. Arrival order is the right
one for audits: a line inserted afterwards with an old ``occurred_at`` (back-dating) cannot be
slipped into the middle of the history, because the chain records when it came, and no link ever
has to be rewritten, so a late event changes nothing already chained.

The links live in their own table ``event_chain`` (``schemas/ddl/0003_event_chain.sql``), one row per
link: (case, position, event id, SHA-256 of the raw bytes, previous hash, hash). ClickHouse 18.16 has
no ``ADD COLUMN IF NOT EXISTS``, and a table of its own also keeps the chain out of the way of the
queries on ``events``.

``ChainWriter.append`` is called by the warehouse sink after it has written a batch of events (the
imperative shell; the engine knows nothing of it). It is idempotent like every other write: a line
already chained (same case, event id and content) is not chained again, so a retried batch, a
replayed stream or a re-run of the same file add no links.

``verify`` recomputes every chain from the stored lines and reports, per case, lines **altered**
(a chained event id whose stored bytes no longer match), **removed** (a link whose line is gone),
**inserted** (a stored line no link covers), **broken** links (the chain table itself edited) and
stored columns that disagree with the raw bytes they were derived from (an ``ALTER … UPDATE`` on,
say, ``officer_id``).

Limits: whoever can rewrite both ``events`` and the whole chain of a case consistently can hide a
change; the chain makes that a deliberate act on two tables rather than a single edit. Give writers
and readers separate ClickHouse users (``schemas/access``), and keep a copy of ``esup audit verify
--json`` heads outside the warehouse when an audit needs a fixed point.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first link of every chain."""

_IDS_PER_QUERY = 5000
_CASES_PER_BUCKET = 2000


def link(prev_hash: str, raw: bytes) -> str:
    """SHA-256(previous hash bytes || raw bytes), hex: one link of a case's chain."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + raw).hexdigest()


def leaf(raw: bytes) -> str:
    """SHA-256 of the raw bytes alone: recognises a line already chained without re-reading it."""
    return hashlib.sha256(raw).hexdigest()


def _as_bytes(value: Any) -> bytes:
    """Raw lines are bytes; a backend may hand back a str (decoded UTF-8) or a buffer."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


@dataclass
class _Tail:
    position: int = 0
    hash: str = GENESIS
    keys: set[tuple[str, str]] = field(default_factory=set)  # (event_id, raw SHA-256) already chained


class ChainWriter:
    """Appends stored lines to their cases' chains; one per warehouse, used from one thread at a time.

    The tail of each case is read from the warehouse at every append, not cached: with a ClickHouse
    server several workers write, and a case whose partition moved to this worker was extended by
    another one since this worker last saw it.
    """

    def __init__(self, wh: Any) -> None:
        self.wh = wh
        self.links_written = 0

    def _tails(self, cases: Sequence[str]) -> dict[str, _Tail]:
        tails: dict[str, _Tail] = defaultdict(_Tail)
        for i in range(0, len(cases), _IDS_PER_QUERY):
            rows = self.wh.query(
                "SELECT case_id, position, event_id, raw_sha256, hash FROM event_chain FINAL "
                "WHERE has({ids:Array(String)}, case_id)", {"ids": list(cases[i:i + _IDS_PER_QUERY])})
            for r in rows:
                t = tails[r["case_id"]]
                t.keys.add((r["event_id"], r["raw_sha256"]))
                pos = int(r["position"])
                # A fork (two links at one position, from two writers racing) continues from the larger
                # hash, so every writer picks the same branch; verify reports the fork.
                if (pos, r["hash"]) > (t.position, t.hash):
                    t.position, t.hash = pos, r["hash"]
        return tails

    def append(self, items: Iterable[tuple[str, str, Any]], at: datetime | None = None) -> int:
        """Chain (case_id, event_id, raw) lines in the order given; returns the number of new links."""
        by_case: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for case_id, event_id, raw in items:
            by_case[case_id or ""].append((event_id or "", _as_bytes(raw)))
        if not by_case:
            return 0
        tails = self._tails(sorted(by_case))
        sha256 = hashlib.sha256
        cases: list[str] = []
        positions: list[int] = []
        event_ids: list[str] = []
        leaves: list[str] = []
        prevs: list[str] = []
        hashes: list[str] = []
        for case_id, lines in by_case.items():
            t = tails[case_id]
            keys, position, prev = t.keys, t.position, t.hash
            prev_bytes = bytes.fromhex(prev)
            for event_id, raw in lines:
                key = (event_id, sha256(raw).hexdigest())
                if key in keys:
                    continue
                keys.add(key)
                digest = sha256(prev_bytes + raw).digest()
                position += 1
                cases.append(case_id)
                positions.append(position)
                event_ids.append(event_id)
                leaves.append(key[1])
                prevs.append(prev)
                prev, prev_bytes = digest.hex(), digest
                hashes.append(prev)
        n = len(cases)
        if n:
            cols = {"case_id": cases, "position": positions, "event_id": event_ids, "raw_sha256": leaves,
                    "prev_hash": prevs, "hash": hashes, "chained_at": [at or datetime.now(UTC)] * n}
            self.wh.write(self.wh.prepare("event_chain", cols))
            self.links_written += n
        return n


def seal(wh: Any, cases: Sequence[str] | None = None) -> int:
    """Chain every stored line no link covers yet, in the order the lines were received; returns the links
    written. For lines stored before migration 0003 or by a bulk load with ``Sink(chain=False)``.

    It chains *whatever* is unchained — a line inserted behind the pipeline's back included — so an
    operator runs ``verify`` first and seals only what verify called "not in the chain" and is known good.
    """
    writer = ChainWriter(wh)
    wanted = sorted(set(cases)) if cases else _case_ids(wh)
    for lo, hi, members in _buckets(wanted):
        rows = wh.query("SELECT case_id, event_id, hex(raw) AS raw_hex FROM events FINAL "
                        "WHERE case_id >= {lo:String} AND case_id <= {hi:String} "
                        "ORDER BY received_at, position, occurred_at, event_id", {"lo": lo, "hi": hi})
        writer.append((r["case_id"], r["event_id"], bytes.fromhex(r["raw_hex"])) for r in rows
                      if r["case_id"] in members)
    return writer.links_written


# ----------------------------------------------------------------------------------------- verify

KINDS = {
    "altered": "入库后被修改",
    "removed": "入库后被删除",
    "inserted": "不在哈希链中（入库后插入，或未经入库程序写入）",
    "broken": "哈希链记录被改动",
    "forked": "哈希链分叉（同一位置有两条链记录）",
    "column": "存储字段与原始报文不一致",
}
"""Problem kinds and how ``esup audit verify`` names them."""


@dataclass(frozen=True)
class Problem:
    case_id: str
    kind: str  # a key of KINDS
    event_id: str
    position: int | None = None  # the link's position, when one is involved
    detail: str = ""

    def describe(self) -> str:
        where = f"第 {self.position} 条" if self.position else "不在链中"
        ev = f"事件 {self.event_id}" if self.event_id else "无事件编号的行"
        extra = f"：{self.detail}" if self.detail else ""
        return f"办件 {self.case_id or '（无办件编号）'} {ev}（{where}）{KINDS[self.kind]}{extra}"


@dataclass
class VerifyReport:
    cases: int = 0
    events: int = 0
    links: int = 0
    problems: list[Problem] = field(default_factory=list)
    heads: dict[str, str] = field(default_factory=dict)  # case -> hash of its last link

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for p in self.problems:
            out[p.kind] += 1
        return dict(out)


def _case_ids(wh: Any) -> list[str]:
    rows = wh.query("SELECT DISTINCT case_id FROM events")
    rows += wh.query("SELECT DISTINCT case_id FROM event_chain")
    return sorted({r["case_id"] for r in rows})


def _buckets(cases: Sequence[str]) -> Iterator[tuple[str, str, set[str]]]:
    for i in range(0, len(cases), _CASES_PER_BUCKET):
        part = cases[i:i + _CASES_PER_BUCKET]
        yield part[0], part[-1], set(part)


_EVENTS_SQL = (
    "SELECT case_id, event_id, valid, hex(raw) AS raw_hex, occurred_at, event_type, source, recorded_at, "
    "officer_id, level FROM events FINAL WHERE case_id >= {lo:String} AND case_id <= {hi:String}")
_CHAIN_SQL = (
    "SELECT case_id, position, event_id, raw_sha256, prev_hash, hash FROM event_chain FINAL "
    "WHERE case_id >= {lo:String} AND case_id <= {hi:String} ORDER BY case_id, position, hash")


def verify(wh: Any, cases: Sequence[str] | None = None, naive_tz: timezone | None = None) -> VerifyReport:
    """Recompute the chains of ``cases`` (default: every case in the warehouse) from the stored lines."""
    report = VerifyReport()
    ms = bool(getattr(getattr(wh, "dialect", None), "datetime64", True))
    wanted = sorted(set(cases)) if cases else _case_ids(wh)
    for lo, hi, members in _buckets(wanted):
        p = {"lo": lo, "hi": hi}
        stored: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in wh.query(_EVENTS_SQL, p):
            if r["case_id"] in members:
                r["raw"] = bytes.fromhex(r.pop("raw_hex"))
                stored[r["case_id"]].append(r)
        chained: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in wh.query(_CHAIN_SQL, p):
            if r["case_id"] in members:
                chained[r["case_id"]].append(r)
        for case_id in sorted(members):
            if case_id not in stored and case_id not in chained:
                continue
            report.cases += 1
            report.events += len(stored.get(case_id, ()))
            report.links += len(chained.get(case_id, ()))
            _verify_case(case_id, stored.get(case_id, []), chained.get(case_id, []), naive_tz, ms, report)
    return report


def _verify_case(case_id: str, rows: list[dict[str, Any]], links: list[dict[str, Any]],
                 naive_tz: timezone | None, ms: bool, report: VerifyReport) -> None:
    problems = report.problems
    # Stored lines by (event id, content): several rows may share an event id (a line re-sent with
    # other bytes is kept beside the first), never the same content.
    by_key: dict[tuple[str, str], dict[str, Any]] = {_row_key(r): r for r in rows}
    matched: dict[tuple[str, str], int] = {}  # stored line -> position of its link
    missing: list[dict[str, Any]] = []
    prev, expected_pos = GENESIS, 1
    for lk in links:
        pos = int(lk["position"])
        if pos < expected_pos:  # links are sorted: a second link at an already seen position
            problems.append(Problem(case_id, "forked", lk["event_id"], pos))
            continue
        why = []
        if pos != expected_pos:
            why.append(f"缺少第 {expected_pos} 至 {pos - 1} 条")
        elif lk["prev_hash"] != prev:
            why.append("前序哈希与上一条不符")
        key = (lk["event_id"], lk["raw_sha256"])
        row = by_key.get(key)
        if row is None:
            missing.append(lk)
        else:
            matched[key] = pos
            if link(lk["prev_hash"], row["raw"]) != lk["hash"]:
                why.append("本条哈希与报文不符")
        if why:
            problems.append(Problem(case_id, "broken", lk["event_id"], pos, "，".join(why)))
        prev, expected_pos = lk["hash"], pos + 1
    if links:
        report.heads[case_id] = prev
    unchained = {k: r for k, r in by_key.items() if k not in matched}
    for lk in missing:
        # The same event id still stored with other bytes: the line was changed, not removed.
        twin = next((k for k in unchained if k[0] == lk["event_id"]), None)
        if twin is not None:
            del unchained[twin]
            problems.append(Problem(case_id, "altered", lk["event_id"], int(lk["position"]),
                                    f"入链时 SHA-256 {lk['raw_sha256'][:16]}…，现为 {twin[1][:16]}…"))
        else:
            problems.append(Problem(case_id, "removed", lk["event_id"], int(lk["position"])))
    for (event_id, _), _r in sorted(unchained.items()):
        problems.append(Problem(case_id, "inserted", event_id))
    for key, r in by_key.items():
        if r["valid"]:
            diff = _column_mismatch(r, naive_tz, ms)
            if diff:
                problems.append(Problem(case_id, "column", r["event_id"], matched.get(key), diff))


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    """(event id, SHA-256 of the raw bytes): how a stored line is matched to its link."""
    return row["event_id"], leaf(row["raw"])


def _column_mismatch(row: dict[str, Any], naive_tz: timezone | None, ms: bool) -> str:
    """Columns of a valid row that no longer say what its raw bytes say (empty when they agree)."""
    from schemas.events import InvalidEvent, decode_event

    ev = decode_event(row["raw"], naive_tz=naive_tz)
    if isinstance(ev, InvalidEvent):
        return "标记为有效的行无法通过校验"
    expect = {
        "case_id": ev.case_id, "event_id": ev.event_id, "event_type": ev.event_type, "source": ev.source,
        "officer_id": ev.officer_id or "", "level": getattr(ev, "level", 0),
        "occurred_at": _instant(ev.occurred_at, ms), "recorded_at": _instant(ev.recorded_at, ms),
    }
    got = dict(row, occurred_at=_instant(row["occurred_at"], ms), recorded_at=_instant(row["recorded_at"], ms))
    bad = [k for k, v in expect.items() if got.get(k) != v and not (k == "level" and int(got.get(k) or 0) == v)]
    return "、".join(bad)


def _instant(value: datetime | None, ms: bool) -> int | None:
    """An instant at the column's precision: milliseconds (DateTime64), or whole seconds (18.16)."""
    if value is None:
        return None
    micros = round(value.timestamp() * 1_000_000)
    return micros // 1000 if ms else micros // 1_000_000
