"""Audit replay (审计重放): recorded history back through the same engine, under its own run id.

An auditor asks months later what should have fired. The answer must come from the engine that
runs live (``rules.engine``) driven by the embedded driver (``streams.embedded.run_events``), never
from a second copy of either, so this module only chooses *what* to replay and *with which catalog*,
feeds it to ``run_events`` and stores the findings under a replay run id (never ``live``).

Selection. Cases are chosen whole: a case's events always go through together, because its findings
depend on all of them. A case belongs to the day range by the China date of its **first valid event**
(usually ``submitted``), and to a department by its **intake fields**: the ``department`` of its latest
``accepted`` event, else of its latest ``submitted`` event, else the department the catalog gives its
item (the same precedence the engine uses). Every value reaches SQL as a query parameter.

Catalog. By default each case is judged under the catalog version the live run recorded for it
(``case_facts.catalog_version``), taken from the catalog history (``config/catalog.yaml`` plus every
``config/catalogs/*.yaml``); a case with no recorded version, or one whose version is no longer on
file, gets the version in force on its acceptance date (and the run says how many). ``--catalog FILE``
judges every case under one file, ``--catalog-as-of DAY`` under the version in force on DAY, and
``--catalog-as-of accepted`` under the version in force on each case's acceptance date.

Determinism. A case's findings depend only on its own events, so cases are processed in buckets:
consecutive ranges of the sorted selected case ids. Within a bucket the rows are de-duplicated
(an identical line delivered twice is one event) and put in a total order that does not depend on
how they were stored: (event time, recorded time, event id, raw bytes). The clock runs to one horizon
for every bucket (by default the latest valid event time in the store, the default of ``esup run``),
so deadlines fire at the instants they would have fired live, and the same selection and
configuration give the same findings with the same ids whatever the storage order or bucket size.

Resume. After a bucket's findings are stored, its index is written to a small JSON checkpoint beside
the warehouse (``<data dir>/replay-runs/<run id>.json``). ``--resume RUN_ID`` re-reads the plan from it
(selection, catalog, thresholds, horizon, bucket boundaries) and skips the finished buckets. A bucket's
findings are handed to the warehouse only once the bucket is complete, so an interrupted bucket leaves
nothing half-written that the resumed run would not write again identically.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import hashlib
import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec

from rules.calendar import DEFAULT_OVERRIDES, WorkCalendar
from rules.catalog import DEFAULT_CATALOG, Catalog, CatalogError, CatalogSet, load_catalog
from rules.clock import china_date, instant
from rules.config import RuleConfig, load_rule_config
from rules.engine import Engine
from rules.findings import Finding, Note
from schemas.events import (
    CHINA_TZ,
    Accepted,
    AnyEvent,
    InvalidEvent,
    Submitted,
    decode_all_valid,
    decode_event,
)
from streams.embedded import run_events
from streams.replay_diff import CaseEvidence, FindingsDiff, item_changes

DEFAULT_HISTORY_DIR = DEFAULT_CATALOG.parent / "catalogs"
"""Superseded (and future) catalog versions, one file each, loaded beside ``config/catalog.yaml``."""

LIVE_RUN = "live"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
BUCKET_EVENTS = 50_000
"""Target events per bucket: big enough that a query's fixed cost is small, small enough to resume."""
BUCKET_IDS = 2_000
"""At most this many case ids per bucket when the selection is filtered: the ids travel as one query
parameter, and a ClickHouse server inlines it into the query text (256 KiB ``max_query_size``)."""
CHECKPOINT_SECONDS = 5.0
"""How often finished buckets are flushed to the warehouse and recorded in the checkpoint."""


class ReplayError(Exception):
    """A replay that cannot start or continue; the message is for the operator (Chinese)."""


class ReplayInterrupted(Exception):
    """Ctrl-C during a replay: finished buckets are stored and recorded; ``--resume`` continues."""

    def __init__(self, run_id: str, done: int, total: int) -> None:
        super().__init__(f"重放 {run_id} 已中断：完成 {done}/{total} 个分桶")
        self.run_id = run_id
        self.done = done
        self.total = total


def check_run_id(run_id: str) -> str:
    if run_id == LIVE_RUN:
        raise ReplayError("运行编号 live 属于实时运行，重放必须使用自己的运行编号")
    if not _RUN_ID.match(run_id):
        raise ReplayError(f"运行编号 {run_id!r} 无效：只能包含字母、数字和 . _ : -，最长 64 个字符")
    return run_id


# ------------------------------------------------------------------------------------------ catalogs


def load_catalog_history(main: str | Path | None = None, directory: str | Path | None = None) -> CatalogSet:
    """Every catalog version on file: ``config/catalog.yaml`` (the current one) and ``config/catalogs/*.yaml``.

    The same version may appear twice (a copy kept in the history directory) only with the same content;
    two versions may not share an effective date, or which one was in force would depend on file order.
    """
    files = [Path(main) if main else DEFAULT_CATALOG]
    hist = Path(directory) if directory else DEFAULT_HISTORY_DIR
    if hist.is_dir():
        files.extend(sorted(p for p in hist.iterdir() if p.suffix in (".yaml", ".yml")))
    by_version: dict[str, tuple[Catalog, Path]] = {}
    for path in files:
        cat = load_catalog(path)
        seen = by_version.get(cat.version)
        if seen is not None:
            if _catalog_bytes(seen[0]) != _catalog_bytes(cat):
                raise CatalogError(f"目录版本 {cat.version} 在 {seen[1]} 和 {path} 中内容不同；一个版本只能有一种内容")
            continue
        by_version[cat.version] = (cat, path)
    starts: dict[date, str] = {}
    for cat, path in by_version.values():
        other = starts.get(cat.effective_from)
        if other is not None:
            raise CatalogError(f"目录版本 {other} 与 {cat.version}（{path}）生效日期相同（{cat.effective_from}），"
                               "无法确定哪个版本生效")
        starts[cat.effective_from] = cat.version
    return CatalogSet(c for c, _ in by_version.values())


def _catalog_bytes(cat: Catalog) -> bytes:
    return msgspec.json.encode(cat)


def fingerprint(*parts: Any) -> str:
    """A short stable digest of plain data and catalogs: equal inputs, equal digest, in every process."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Catalog):
            h.update(_catalog_bytes(p))
        elif isinstance(p, msgspec.Struct):
            h.update(msgspec.json.encode(p))
        else:
            h.update(json.dumps(p, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


CatalogMode = Literal["recorded", "file", "as_of", "accepted"]


@dataclass(frozen=True)
class CatalogChoice:
    """Which catalog judges each case (see the module docstring)."""

    mode: CatalogMode = "recorded"
    file: str | None = None
    as_of: date | None = None

    @classmethod
    def parse(cls, catalog: str | Path | None, as_of: str | None) -> CatalogChoice:
        if catalog is not None and as_of is not None:
            raise ReplayError("--catalog 与 --catalog-as-of 只能选一个")
        if catalog is not None:
            return cls("file", file=str(Path(catalog).resolve()))
        if as_of is None:
            return cls()
        if as_of == "accepted":
            return cls("accepted")
        if as_of == "today":
            return cls("as_of", as_of=datetime.now(CHINA_TZ).date())
        try:
            return cls("as_of", as_of=date.fromisoformat(as_of))
        except ValueError:
            raise ReplayError(f"--catalog-as-of {as_of!r}：应为日期（2026-11-01）、today 或 accepted") from None

    def describe(self) -> str:
        if self.mode == "file":
            return f"指定目录文件 {self.file}"
        if self.mode == "as_of":
            return f"{self.as_of} 生效的目录版本"
        if self.mode == "accepted":
            return "各办件受理日生效的目录版本"
        return "实时运行记录的目录版本（无记录时按受理日）"

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "file": self.file, "as_of": self.as_of.isoformat() if self.as_of else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CatalogChoice:
        return cls(d["mode"], d.get("file"), date.fromisoformat(d["as_of"]) if d.get("as_of") else None)


class Engines:
    """The engines of one replay, one per catalog they apply, sharing one calendar and one threshold set.

    The engine picks a case's catalog by the date of its intake from the CatalogSet it was built with.
    Pinning a case to a recorded version therefore means an engine whose set holds that version only;
    cases are grouped by the engine that judges them, and each group goes through ``run_events``.
    """

    def __init__(self, choice: CatalogChoice, history: CatalogSet, config: RuleConfig,
                 calendar: WorkCalendar | None = None) -> None:
        self.choice = choice
        self.history = history
        self.config = config
        self.calendar = calendar or WorkCalendar.default()
        self._engines: dict[str, Engine] = {}
        self.missing_versions: Counter[str] = Counter()  # recorded versions not on file (fell back to date)
        self.override: Catalog | None = None
        if choice.mode == "file":
            assert choice.file is not None
            self.override = load_catalog(choice.file)
        elif choice.mode == "as_of":
            assert choice.as_of is not None
            self.override = history.in_force(choice.as_of)
        used: list[Catalog] = [self.override] if self.override is not None else list(history.versions)
        try:  # the holiday overrides move deadlines as much as the catalog does
            holidays = DEFAULT_OVERRIDES.read_text(encoding="utf-8")
        except OSError:
            holidays = ""
        self.fingerprint = fingerprint(choice.to_json(), *used, config, holidays)

    @property
    def needs_recorded(self) -> bool:
        return self.choice.mode == "recorded"

    def key_for(self, recorded: str | None) -> str:
        """The engine key for a case: ``=<version>`` pinned, ``@date`` by intake date, ``!override``."""
        if self.override is not None:
            return "!override"
        if self.choice.mode == "recorded" and recorded is not None:
            if self.history.version(recorded) is not None:
                return "=" + recorded
            self.missing_versions[recorded] += 1
        return "@date"

    def engine(self, key: str) -> Engine:
        eng = self._engines.get(key)
        if eng is None:
            if key == "!override":
                assert self.override is not None
                cats = CatalogSet.single(self.override)
            elif key.startswith("="):
                cat = self.history.version(key[1:])
                assert cat is not None
                cats = CatalogSet.single(cat)
            else:
                cats = self.history
            eng = self._engines[key] = Engine(cats, self.calendar, self.config)
        return eng

    def catalog_for(self, recorded: str | None, intake_day: date | None) -> Catalog:
        """The catalog a case is judged under (for explanations; the engine decides the same way)."""
        key = self.key_for(recorded)
        if key == "!override":
            assert self.override is not None
            return self.override
        if key.startswith("="):
            cat = self.history.version(key[1:])
            assert cat is not None
            return cat
        return self.history.in_force(intake_day) if intake_day else self.history.latest

    def department_items(self, department: str) -> list[str]:
        """Item codes that belong to ``department`` in any catalog this replay may use."""
        cats = list(self.history.versions) + ([self.override] if self.override is not None else [])
        return sorted({i.code for c in cats for i in c.items if i.department == department})


# ----------------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Which cases to replay; every criterion given must hold (an empty selection is everything)."""

    day_from: date | None = None
    day_to: date | None = None
    cases: tuple[str, ...] = ()
    department: str | None = None

    @property
    def everything(self) -> bool:
        return self.day_from is None and self.day_to is None and not self.cases and self.department is None

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) instants of the first-event day range, China time."""
        start = datetime.combine(self.day_from, datetime.min.time(), CHINA_TZ) if self.day_from else None
        end = (datetime.combine(self.day_to + timedelta(days=1), datetime.min.time(), CHINA_TZ)
               if self.day_to else None)
        return start, end

    def describe(self) -> str:
        parts = []
        if self.day_from or self.day_to:
            parts.append(f"首个事件日期 {self.day_from or '…'} 至 {self.day_to or '…'}")
        if self.department:
            parts.append(f"部门 {self.department}")
        if self.cases:
            shown = "、".join(self.cases[:5]) + (f" 等 {len(self.cases)} 件" if len(self.cases) > 5 else "")
            parts.append(f"办件 {shown}")
        return "；".join(parts) or "全部办件"

    def to_json(self) -> dict[str, Any]:
        return {"day_from": self.day_from.isoformat() if self.day_from else None,
                "day_to": self.day_to.isoformat() if self.day_to else None,
                "cases": list(self.cases), "department": self.department}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Selection:
        return cls(date.fromisoformat(d["day_from"]) if d.get("day_from") else None,
                   date.fromisoformat(d["day_to"]) if d.get("day_to") else None,
                   tuple(d.get("cases") or ()), d.get("department"))


class CaseRef(NamedTuple):
    """A selected case (a tuple: a selection of a million cases builds a million of them)."""

    case_id: str
    events: int  # stored valid rows (a re-delivered line may count twice: an estimate for progress)


@dataclass(frozen=True)
class Bucket:
    """A range of sorted selected case ids, ``lo`` to ``hi`` inclusive."""

    lo: str
    hi: str
    cases: int
    events: int


def make_buckets(cases: Sequence[CaseRef], filtered: bool, target_events: int = BUCKET_EVENTS) -> list[Bucket]:
    """Cut the sorted selection into consecutive ranges of about ``target_events`` events each."""
    out: list[Bucket] = []
    limit_ids = BUCKET_IDS if filtered else None
    start = 0
    n_events = 0
    for i, c in enumerate(cases):
        n_events += c.events
        full = n_events >= target_events or (limit_ids is not None and i - start + 1 >= limit_ids)
        if full or i == len(cases) - 1:
            out.append(Bucket(cases[start].case_id, c.case_id, i - start + 1, n_events))
            start, n_events = i + 1, 0
    return out


def ids_by_bucket(buckets: Sequence[Bucket], case_ids: Iterable[str]) -> list[list[str]]:
    """Assign (sorted) selected case ids to buckets by range; ids outside every range are dropped."""
    his = [b.hi for b in buckets]
    out: list[list[str]] = [[] for _ in buckets]
    for cid in case_ids:
        i = bisect.bisect_left(his, cid)
        if i < len(buckets) and buckets[i].lo <= cid:
            out[i].append(cid)
    return out


_NO_RECORDED_AT = datetime.min.replace(tzinfo=UTC)  # before any recorded time


def order_events(raws: Iterable[str | bytes], naive_tz: timezone | None, times: list[float] | None = None,
                 ) -> tuple[list[AnyEvent], list[InvalidEvent]]:
    """Decode stored lines into one total order that does not depend on storage order.

    Identical lines are one event (a re-delivery); the rest are ordered by event time, then recorded
    time, event id and the raw line, so even an event re-sent with other content has a fixed place.
    ``times``, if given, receives each ordered event's time as epoch seconds (for ``run_events``).
    """
    # As bytes: UTF-8 keeps the order of code points, so the raw tie-break orders as the text would.
    lines = list({r.encode() if isinstance(r, str) else bytes(r) for r in raws})
    bad: list[InvalidEvent] = []
    keyed: list[tuple[float, datetime, str, bytes, AnyEvent]] = []
    no_rec = _NO_RECORDED_AT
    decoded = decode_all_valid(lines)  # the usual case: every stored line decodes as it is, in one call
    for n, raw in enumerate(lines):
        ev = decoded[n] if decoded is not None else decode_event(raw, naive_tz=naive_tz)
        if isinstance(ev, InvalidEvent):
            bad.append(ev)
            continue
        rec = ev.recorded_at
        # recorded_at is compared only between events of the same instant (rare): as the aware datetime it
        # is, which orders as its instant, without converting every event's
        keyed.append((instant(ev.occurred_at), rec if rec is not None else no_rec, ev.event_id, raw, ev))
    keyed.sort()  # raws are distinct, so the comparison never reaches the event itself
    bad.sort(key=lambda b: b.raw)
    if times is not None:
        times.extend([k[0] for k in keyed])
    return [k[4] for k in keyed], bad


_SEP = "\x00"  # cannot occur in JSON text (control characters inside strings must be escaped)
_SEP_BYTES = _SEP.encode()


def _lines(joined: bytes) -> list[bytes]:
    """Lines joined by ``_SEP``, with or without one after the last (a line is never empty)."""
    if not joined:
        return []
    lines = joined.split(_SEP_BYTES)
    if not lines[-1]:
        lines.pop()
    return lines


# ------------------------------------------------------------------------------------------- sources


_SELECT_SQL = """
SELECT case_id, count() AS n
FROM events
WHERE valid = 1 {case_filter}
GROUP BY case_id
{having}
ORDER BY case_id
"""

# The intake department: latest `accepted` naming one, else latest `submitted`; else the item's.
_DEPT = """
    if(countIf(event_type = 'accepted' AND visitParamExtractString(raw, 'department') != '') > 0,
       argMaxIf(visitParamExtractString(raw, 'department'), occurred_at,
                event_type = 'accepted' AND visitParamExtractString(raw, 'department') != ''),
       argMaxIf(visitParamExtractString(raw, 'department'), occurred_at,
                event_type = 'submitted' AND visitParamExtractString(raw, 'department') != ''))
"""
_ITEM = """
    if(countIf(event_type = 'accepted' AND visitParamExtractString(raw, 'item_code') != '') > 0,
       argMaxIf(visitParamExtractString(raw, 'item_code'), occurred_at,
                event_type = 'accepted' AND visitParamExtractString(raw, 'item_code') != ''),
       argMaxIf(visitParamExtractString(raw, 'item_code'), occurred_at,
                event_type = 'submitted' AND visitParamExtractString(raw, 'item_code') != ''))
"""


class WarehouseSource:
    """Recorded lines from the warehouse's raw ``events`` table (valid rows only: invalid ones never ran)."""

    kind = "warehouse"

    def __init__(self, wh: Any, naive_tz: timezone | None = None) -> None:
        self.wh = wh
        self.naive_tz = naive_tz

    def describe(self) -> str:
        return getattr(self.wh, "describe", lambda: "数据仓库")()

    def select(self, sel: Selection, dept_items: Sequence[str] = ()) -> list[CaseRef]:
        params: dict[str, Any] = {}
        case_filter = ""
        if sel.cases:
            case_filter = ("AND case_id >= {first:String} AND case_id <= {last:String} "
                           "AND has({cases:Array(String)}, case_id)")
            params["cases"] = sorted(set(sel.cases))
            params["first"], params["last"] = params["cases"][0], params["cases"][-1]
        having: list[str] = []
        start, end = sel.bounds()
        if start is not None:
            having.append("min(occurred_at) >= {start:DateTime}")
            params["start"] = start
        if end is not None:
            having.append("min(occurred_at) < {end:DateTime}")
            params["end"] = end
        if sel.department is not None:
            having.append(f"if(({_DEPT}) != '', ({_DEPT}) = {{department:String}}, "
                          f"has({{dept_items:Array(String)}}, {_ITEM}))")
            params["department"] = sel.department
            params["dept_items"] = list(dept_items)
        sql = _SELECT_SQL.format(case_filter=case_filter, having=("HAVING " + " AND ".join(having)) if having else "")
        # no time in the result: converting a million first times to datetimes cost more than the query
        return [CaseRef(r["case_id"], int(r["n"])) for r in self.wh.query(sql, params)]

    def horizon(self) -> datetime | None:
        """The latest valid event time in the store, exact (the column is kept to the millisecond)."""
        rows = self.wh.query("SELECT raw FROM events WHERE valid = 1 ORDER BY occurred_at DESC LIMIT 32")
        times = [ev.occurred_at for r in rows
                 if not isinstance(ev := decode_event(r["raw"], naive_tz=self.naive_tz), InvalidEvent)]
        return max(times) if times else None

    def _bucket_filter(self, bucket: Bucket, ids: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"lo": bucket.lo, "hi": bucket.hi}
        extra = ""
        if ids is not None:
            extra = "AND has({ids:Array(String)}, case_id)"
            params["ids"] = list(ids)
        return f"valid = 1 AND case_id >= {{lo:String}} AND case_id <= {{hi:String}} {extra}", params

    def read(self, bucket: Bucket, ids: Sequence[str] | None) -> list[str]:
        """The bucket's valid stored lines, in no particular order (``order_events`` orders them).

        Grouped per case in SQL: a row per case instead of a row per event makes the conversion of the
        result to Python objects, not the query, four times cheaper.
        """
        where, params = self._bucket_filter(bucket, ids)
        rows = self.wh.query(f"SELECT case_id, groupArray(raw) AS raws FROM events WHERE {where} GROUP BY case_id",
                             params)
        return [raw for r in rows for raw in r["raws"]]

    def read_joined(self, bucket: Bucket, ids: Sequence[str] | None) -> bytes:
        """The same lines joined by ``_SEP``, UTF-8, as worker processes take them (see ``_lines``).

        On chDB the result comes back as one byte string, each line followed by ``_SEP`` (rows of one
        value written one after another, format RawBLOB): the replay's main process makes no Python
        object per event (it made three: the value, the list, the join), which made it read four times
        faster (403,000 lines: 2.3 CPU seconds before, 0.6 after); and no array is built in SQL either
        (``groupArray`` then ``arrayStringConcat`` took twice the CPU: 55-79 against 32 ms a bucket).
        """
        query_bytes = getattr(self.wh, "query_bytes", None)
        if query_bytes is None:  # a ClickHouse server: rows through the driver, joined here
            return _SEP.join(self.read(bucket, ids)).encode()
        where, params = self._bucket_filter(bucket, ids)
        return query_bytes(f"SELECT concat(raw, char(0)) FROM events WHERE {where}", params)

    def recorded_versions(self, bucket: Bucket) -> dict[str, str]:
        rows = self.wh.query(
            "SELECT case_id, argMax(catalog_version, version) AS v FROM case_facts "
            "WHERE case_id >= {lo:String} AND case_id <= {hi:String} GROUP BY case_id",
            {"lo": bucket.lo, "hi": bucket.hi})
        return {r["case_id"]: r["v"] for r in rows if r["v"]}

    def recorded_for(self, case_ids: Sequence[str]) -> dict[str, str]:
        """Recorded catalog versions of some cases (from the live run's case facts)."""
        out: dict[str, str] = {}
        ids = sorted(set(case_ids))
        for i in range(0, len(ids), BUCKET_IDS):
            part = ids[i:i + BUCKET_IDS]
            rows = self.wh.query(
                "SELECT case_id, argMax(catalog_version, version) AS v FROM case_facts "
                "WHERE case_id >= {lo:String} AND case_id <= {hi:String} AND has({ids:Array(String)}, case_id) "
                "GROUP BY case_id", {"ids": part, "lo": part[0], "hi": part[-1]})
            out.update({r["case_id"]: r["v"] for r in rows if r["v"]})
        return out

    def evidence(self, case_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored lines of some cases (valid or not) with their times, for explaining differences."""
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        ids = sorted(set(case_ids))
        for i in range(0, len(ids), BUCKET_IDS):
            part = ids[i:i + BUCKET_IDS]  # sorted: the range lets the primary key skip the rest of the table
            rows = self.wh.query(
                "SELECT case_id, event_id, event_type, occurred_at, recorded_at, received_at, valid, "
                "cityHash64(raw) AS raw_hash FROM events WHERE case_id >= {lo:String} AND case_id <= {hi:String} "
                "AND has({ids:Array(String)}, case_id) ORDER BY case_id, occurred_at, event_id, raw_hash",
                {"ids": part, "lo": part[0], "hi": part[-1]})
            for r in rows:
                r["valid"] = bool(r["valid"])
                out[r.pop("case_id")].append(r)
        return out


class ArchiveSource:
    """An exported JSON Lines archive of event lines (the format ``esup run`` reads), instead of the store.

    The whole file is read once; lines that do not decode are counted (they never ran live either).
    Recorded catalog versions come from the warehouse when one is given, else every case is judged
    by its acceptance date.
    """

    kind = "archive"

    def __init__(self, path: str | Path, naive_tz: timezone | None = None, versions: WarehouseSource | None = None):
        self.path = Path(path)
        self.naive_tz = naive_tz
        self.versions = versions
        self.lines = 0
        self.invalid: list[InvalidEvent] = []
        self._by_case: dict[str, list[str]] = defaultdict(list)
        self._events: dict[str, list[AnyEvent]] = {}
        self._ids: list[str] = []
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise ReplayError(f"无法读取归档文件 {self.path}：{exc.strerror}") from None
        with fh:
            for lineno, line in enumerate(fh, start=1):
                raw = line.strip()
                if not raw:
                    continue
                self.lines += 1
                ev = decode_event(raw, position=lineno, naive_tz=naive_tz)
                if isinstance(ev, InvalidEvent):
                    self.invalid.append(ev)
                else:
                    self._by_case[ev.case_id].append(raw.decode("utf-8", "replace"))
                    self._events.setdefault(ev.case_id, []).append(ev)
        self._ids = sorted(self._by_case)

    def describe(self) -> str:
        return f"归档文件 {self.path}"

    def select(self, sel: Selection, dept_items: Sequence[str] = ()) -> list[CaseRef]:
        start, end = sel.bounds()
        wanted = set(sel.cases)
        items = set(dept_items)
        out = []
        for cid in self._ids:
            if wanted and cid not in wanted:
                continue
            evs = self._events[cid]
            first = min(e.occurred_at for e in evs)
            if (start is not None and first < start) or (end is not None and first >= end):
                continue
            if sel.department is not None:
                dept, item = _intake_fields(evs)
                if (dept != sel.department) if dept else (item not in items):
                    continue
            out.append(CaseRef(cid, len(evs)))
        return out

    def horizon(self) -> datetime | None:
        times = [e.occurred_at for evs in self._events.values() for e in evs]
        return max(times) if times else None

    def read(self, bucket: Bucket, ids: Sequence[str] | None) -> list[str]:
        if ids is None:
            lo = bisect.bisect_left(self._ids, bucket.lo)
            hi = bisect.bisect_right(self._ids, bucket.hi)
            keys: Sequence[str] = self._ids[lo:hi]
        else:
            keys = ids
        return [raw for cid in keys for raw in self._by_case.get(cid, ())]

    def read_joined(self, bucket: Bucket, ids: Sequence[str] | None) -> bytes:
        return _SEP.join(self.read(bucket, ids)).encode()

    def recorded_versions(self, bucket: Bucket) -> dict[str, str]:
        return self.versions.recorded_versions(bucket) if self.versions is not None else {}

    def recorded_for(self, case_ids: Sequence[str]) -> dict[str, str]:
        return self.versions.recorded_for(case_ids) if self.versions is not None else {}

    def evidence(self, case_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for cid in sorted(set(case_ids)):
            evs = sorted(self._events.get(cid, ()), key=lambda e: (e.occurred_at, e.event_id))
            out[cid] = [{"event_id": e.event_id, "event_type": e.event_type, "occurred_at": e.occurred_at,
                         "recorded_at": e.recorded_at, "received_at": None, "valid": True,
                         "raw_hash": hashlib.blake2b(msgspec.json.encode(e), digest_size=8).hexdigest()}
                        for e in evs]
        return out


def _intake_fields(evs: Sequence[AnyEvent]) -> tuple[str | None, str | None]:
    """(department, item code) of a case as the selection reads them: latest accepted, else submitted."""
    def latest(kind: type, name: str) -> str | None:
        vals = sorted(((e.occurred_at, getattr(e, name)) for e in evs if isinstance(e, kind) and getattr(e, name)),
                      key=lambda x: x[0])
        return vals[-1][1] if vals else None

    return (latest(Accepted, "department") or latest(Submitted, "department"),
            latest(Accepted, "item_code") or latest(Submitted, "item_code"))


Source = WarehouseSource | ArchiveSource


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class ReplayPlan:
    """Everything that decides a replay's output; stored in the checkpoint so a resume repeats it."""

    run_id: str
    source: str  # "warehouse" or "archive:<absolute path>"
    selection: Selection
    catalog: CatalogChoice
    catalogs_dir: str | None
    rules_config: str | None
    until: datetime | None
    buckets: list[Bucket]
    filtered: bool
    fingerprint: str  # catalogs + thresholds in use: a resume refuses if they changed on disk
    selected_cases: int = 0
    selected_events: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "selection": self.selection.to_json(),
                "catalog": self.catalog.to_json(), "catalogs_dir": self.catalogs_dir,
                "rules_config": self.rules_config, "until": self.until.isoformat() if self.until else None,
                "buckets": [asdict(b) for b in self.buckets], "filtered": self.filtered,
                "fingerprint": self.fingerprint, "selected_cases": self.selected_cases,
                "selected_events": self.selected_events}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReplayPlan:
        return cls(d["run_id"], d["source"], Selection.from_json(d["selection"]), CatalogChoice.from_json(d["catalog"]),
                   d.get("catalogs_dir"), d.get("rules_config"),
                   datetime.fromisoformat(d["until"]) if d.get("until") else None,
                   [Bucket(**b) for b in d["buckets"]], bool(d["filtered"]), d["fingerprint"],
                   int(d.get("selected_cases", 0)), int(d.get("selected_events", 0)))


def default_run_id(source: str, selection: Selection, engines: Engines, until: datetime | None) -> str:
    """``replay-`` and a digest of what decides the output: the same question gets the same run id."""
    return "replay-" + fingerprint(source, selection.to_json(), engines.fingerprint,
                                   until.isoformat() if until else None)[:12]


class Checkpoint:
    """The run's plan and its finished buckets, as one JSON file replaced atomically on every save."""

    def __init__(self, directory: str | Path, run_id: str) -> None:
        self.path = Path(directory) / f"{run_id}.json"
        self.plan: ReplayPlan | None = None
        self.done: set[int] = set()
        self.finished = False
        self.stats: dict[str, Any] = {}

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Checkpoint:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError:
            raise ReplayError(f"找不到重放运行的断点文件 {self.path}") from None
        except json.JSONDecodeError as exc:
            raise ReplayError(f"断点文件 {self.path} 已损坏：{exc}") from None
        self.plan = ReplayPlan.from_json(doc["plan"])
        self.done = set(doc.get("done", ()))
        self.finished = bool(doc.get("finished"))
        self.stats = doc.get("stats", {})
        return self

    def save(self) -> None:
        assert self.plan is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"plan": self.plan.to_json(), "done": sorted(self.done), "finished": self.finished,
               "stats": self.stats, "saved_at": datetime.now(UTC).isoformat()}
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------------------------- run


@dataclass
class ReplayResult:
    run_id: str
    plan: ReplayPlan
    cases: int = 0
    events: int = 0
    undecodable: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    skipped_buckets: int = 0  # finished in an earlier (interrupted) session
    catalog_versions: Counter[str] = field(default_factory=Counter)  # cases per catalog version applied
    missing_versions: Counter[str] = field(default_factory=Counter)
    # Where the time went: read (warehouse query and conversion), decode (lines to events, ordering),
    # engine (run_events), write (findings to the sink, flushes, checkpoints). With worker processes,
    # decode and engine are summed over the workers and may exceed ``wall``.
    seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "decode": 0.0, "engine": 0.0,
                                                                "write": 0.0})
    wall: float = 0.0  # this session, end to end
    workers: int = 1
    cpu_seconds: float = 0.0  # CPU time of decode and engine (all processes): robust to a busy machine
    decode_cpu_seconds: float = 0.0

    def by_rule(self) -> Counter[tuple[str, str]]:
        return Counter((f.rule, f.severity) for f in self.findings)

    @property
    def total_seconds(self) -> float:
        return self.wall or sum(self.seconds.values())


ProgressFn = Callable[[int], None]


def plan_replay(source: Source, selection: Selection, engines: Engines, *, run_id: str | None = None,
                until: datetime | None = None, source_name: str = "warehouse", catalogs_dir: str | None = None,
                rules_config: str | None = None, target_events: int = BUCKET_EVENTS,
                ) -> tuple[ReplayPlan, list[CaseRef]]:
    """Choose the cases, the horizon and the buckets; nothing is run or written."""
    dept_items = engines.department_items(selection.department) if selection.department else []
    cases = source.select(selection, dept_items)
    horizon = until or source.horizon()
    filtered = not selection.everything
    buckets = make_buckets(cases, filtered, target_events)
    rid = check_run_id(run_id) if run_id else default_run_id(source_name, selection, engines, horizon)
    plan = ReplayPlan(rid, source_name, selection, engines.choice, catalogs_dir, rules_config, horizon, buckets,
                      filtered, engines.fingerprint, len(cases), sum(c.events for c in cases))
    return plan, cases


@dataclass
class BucketOutcome:
    """What one bucket produced: everything the parent needs, small enough to send between processes."""

    index: int
    findings: list[Finding]
    notes: list[Note]
    cases: int
    events: int
    undecodable: int
    versions: Counter[str]
    missing: Counter[str]
    seconds: dict[str, float]


def judge_bucket(engines: Engines, index: int, raws: list[str], recorded: Mapping[str, str],
                 until: datetime | None, naive_tz: timezone | None, progress: ProgressFn | None = None,
                 ) -> BucketOutcome:
    """One bucket through the engine: order its lines, group its cases by catalog, ``run_events`` each group.

    Cases are independent, so the groups may run one after another with the same ``until``: each case
    sees its deadlines fire at the same instants as in one combined run.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    times: list[float] = []
    events, bad = order_events(raws, naive_tz, times)
    before = Counter(engines.missing_versions)
    groups: dict[str, list[AnyEvent]] = defaultdict(list)
    group_times: dict[str, list[float]] = defaultdict(list)
    case_key: dict[str, str] = {}
    for ev, t in zip(events, times, strict=True):
        key = case_key.get(ev.case_id)
        if key is None:
            key = case_key[ev.case_id] = engines.key_for(recorded.get(ev.case_id))
        groups[key].append(ev)
        group_times[key].append(t)
    t1, c1 = time.perf_counter(), time.process_time()
    findings: list[Finding] = []
    notes: list[Note] = []
    versions: Counter[str] = Counter()
    cases = offset = 0
    for key in sorted(groups):
        evs = groups[key]
        tick = (lambda n, s=offset: progress(s + n)) if progress is not None else None
        out = run_events(engines.engine(key), evs, until=until, progress=tick, times=group_times[key])
        findings.extend(out.findings)
        notes.extend(out.notes)
        cases += out.cases
        for st in out.states.values():
            versions[st.info.catalog_version or "-"] += 1
        offset += len(evs)
    findings.sort(key=lambda f: (f.fired_at, f.finding_id))
    missing = Counter(engines.missing_versions)
    missing.subtract(before)
    return BucketOutcome(index, findings, notes, cases, len(events), len(bad), versions, +missing,
                         {"decode": t1 - t0, "engine": time.perf_counter() - t1, "cpu": time.process_time() - c0,
                          "decode_cpu": c1 - c0})


# A worker process keeps its own engines (built once from the plan's files) between buckets.
_WORKER: dict[str, Any] = {}


def _worker_init(choice: dict[str, Any], catalogs_dir: str | None, rules_config: str | None,
                 naive: timezone | None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _WORKER["engines"] = engines_for(CatalogChoice.from_json(choice), catalogs_dir, rules_config)
    _WORKER["naive"] = naive


def _worker_judge(index: int, path: str, recorded: dict[str, str], until: datetime | None) -> BucketOutcome:
    """One bucket in a worker. Its lines, joined in one byte string, wait in a slot file of the parent's
    spool (``_Spool``): only the file's name crosses the pool's pipe."""
    with open(path, "rb") as fh:
        joined = fh.read()
    gc.disable()  # as run_events does: case states hold no cycles, and full scans of them cost more than the rules
    try:
        return judge_bucket(_WORKER["engines"], index, _lines(joined), recorded, until, _WORKER["naive"])
    finally:
        gc.enable()


class _Spool:
    """Where the parent leaves each bucket's lines for a worker: one file per bucket in flight, in a
    private directory in memory (``/dev/shm``) where the system has one, removed at the end.

    Not the pool's pipe: a bucket is tens of MB, and a worker that dies (the OOM killer, say) while
    the parent's feeder thread is writing one to the pipe leaves that thread blocked for good — the
    parent holds the pipe's read end too — so the pool's shutdown, and the interpreter's exit, would
    wait forever (CPython 3.11). Small messages never fill the pipe. A slot is written over in place
    when it comes free (a fresh file per bucket made the kernel clear its pages every time: 2-4 %
    slower than the pipe; in place, as fast).
    """

    def __init__(self, slots: int) -> None:
        import tempfile

        shm = "/dev/shm"
        base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        self.dir = Path(tempfile.mkdtemp(prefix="esup-replay-", dir=base))
        self._free = [str(self.dir / f"slot-{k}") for k in range(slots)]

    def put(self, joined: bytes) -> str:
        """A free slot holding ``joined``; give it back with ``release`` once its worker is done."""
        path = self._free.pop()
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as fh:  # no O_TRUNC: pages reused
            fh.write(joined)
            fh.truncate()
        return path

    def release(self, path: str) -> None:
        self._free.append(path)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def run_replay(source: Source, plan: ReplayPlan, engines: Engines, cases: Sequence[CaseRef], *,
               sink: Any = None, checkpoint: Checkpoint | None = None, progress: ProgressFn | None = None,
               keep_findings: bool = True, checkpoint_seconds: float = CHECKPOINT_SECONDS,
               workers: int = 1) -> ReplayResult:
    """Replay the plan's unfinished buckets; store, checkpoint, and return the result.

    With ``workers`` > 1 the buckets are judged in that many worker processes (spawned, never forked:
    the parent holds the warehouse) while this process reads the next buckets and stores the findings;
    buckets are independent, so the output is the same whatever order they finish in.
    ``progress(n)`` gets the number of events done so far in this session. Ctrl-C raises
    :class:`ReplayInterrupted` after storing and recording every finished bucket.
    """
    started = time.perf_counter()
    result = ReplayResult(plan.run_id, plan, workers=max(1, workers))
    done = set(checkpoint.done) if checkpoint is not None else set()
    result.skipped_buckets = len(done & set(range(len(plan.buckets))))
    per_bucket = ids_by_bucket(plan.buckets, (c.case_id for c in cases)) if plan.filtered else None
    pending: list[int] = []  # finished buckets whose findings are handed to the sink but not yet flushed
    last_save = time.monotonic()
    todo = [i for i in range(len(plan.buckets)) if i not in done]

    def commit() -> None:
        nonlocal last_save
        t0 = time.perf_counter()
        if sink is not None:
            sink.flush()
        if checkpoint is not None and pending:
            checkpoint.done.update(pending)
            checkpoint.save()
        pending.clear()
        result.seconds["write"] += time.perf_counter() - t0
        last_save = time.monotonic()

    def read(i: int) -> tuple[bytes, dict[str, str]] | None:
        ids = per_bucket[i] if per_bucket is not None else None
        if ids is not None and not ids:
            return None
        t0 = time.perf_counter()
        raws = source.read_joined(plan.buckets[i], ids)
        recorded = source.recorded_versions(plan.buckets[i]) if engines.needs_recorded else {}
        result.seconds["read"] += time.perf_counter() - t0
        return raws, recorded

    def take(out: BucketOutcome) -> None:
        nonlocal last_save
        t0 = time.perf_counter()
        result.cases += out.cases
        result.events += out.events
        result.undecodable += out.undecodable
        result.catalog_versions.update(out.versions)
        result.missing_versions.update(out.missing)
        result.seconds["decode"] += out.seconds["decode"]
        result.seconds["engine"] += out.seconds["engine"]
        result.cpu_seconds += out.seconds["cpu"]
        result.decode_cpu_seconds += out.seconds["decode_cpu"]
        if sink is not None:
            sink.add_findings(out.findings, run_id=plan.run_id)
            sink.add_notes(out.notes, run_id=plan.run_id)
        if keep_findings:
            result.findings.extend(out.findings)
            result.notes.extend(out.notes)
        pending.append(out.index)
        result.seconds["write"] += time.perf_counter() - t0
        if progress is not None:
            progress(result.events)
        if time.monotonic() - last_save >= checkpoint_seconds:
            commit()

    paused = gc.isenabled()
    gc.disable()  # the whole replay, not only run_events: decoding a bucket makes many objects, no cycles
    try:
        if workers <= 1:
            for i in todo:
                got = read(i)
                if got is None:
                    pending.append(i)
                    continue
                base = result.events
                tick = (lambda n, b=base: progress(b + n)) if progress is not None else None
                take(judge_bucket(engines, i, _lines(got[0]), got[1], plan.until, source.naive_tz, tick))
        else:
            _run_pool(plan, todo, read, take, pending.append, source.naive_tz, workers)
        commit()
    except KeyboardInterrupt:
        commit()  # only whole buckets were handed to the sink: store them and record them as done
        finished = len(checkpoint.done) if checkpoint is not None else len(done)
        raise ReplayInterrupted(plan.run_id, finished, len(plan.buckets)) from None
    except Exception:
        with contextlib.suppress(Exception):  # keep what finished (a resume skips it); the error is the news
            commit()
        raise
    finally:
        if paused:
            gc.enable()
    result.findings.sort(key=lambda f: (f.fired_at, f.finding_id))
    result.wall = time.perf_counter() - started
    if checkpoint is not None:
        checkpoint.finished = True
        checkpoint.stats = {"cases": result.cases, "events": result.events, "findings": len(result.findings),
                            "undecodable": result.undecodable}
        checkpoint.save()
    return result


def _run_pool(plan: ReplayPlan, todo: list[int], read: Callable[[int], Any], take: Callable[[BucketOutcome], None],
              skip: Callable[[int], None], naive: timezone | None, workers: int) -> None:
    """Keep ``workers`` + 1 buckets in flight; take each outcome as it finishes."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(plan.catalog.to_json(), plan.catalogs_dir, plan.rules_config, naive))
    spool = _Spool(workers + 1)
    inflight: dict[Future[BucketOutcome], str] = {}  # bucket in a worker -> its spool slot
    queue = list(reversed(todo))
    try:
        while queue or inflight:
            while queue and len(inflight) < workers + 1:
                i = queue.pop()
                got = read(i)
                if got is None:
                    skip(i)
                    continue
                path = spool.put(got[0])
                inflight[pool.submit(_worker_judge, i, path, got[1], plan.until)] = path
            if not inflight:
                continue
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in finished:
                spool.release(inflight.pop(fut))
            for fut in sorted(finished, key=lambda f: f.result().index):  # a dead worker's raises here
                take(fut.result())
    except BrokenProcessPool as exc:
        raise ReplayError("一个引擎工作进程意外退出（可能是内存不足被系统终止）：已完成的分桶已保存，"
                          "用 --resume 加运行编号继续；内存紧张时减少 --workers") from exc
    finally:
        for fut in inflight:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        spool.close()


# -------------------------------------------------------------------------------------- stored runs


_FINDING_COLUMNS = ("run_id, finding_id, rule, category, severity, case_id, item_code, department, window, "
                    "region_code, officer_id, fired_at, deadline, event_id, message, basis, catalog_version, "
                    "occurrence")


def stored_findings(wh: Any, run_id: str, plan: ReplayPlan, cases: Sequence[CaseRef]) -> list[dict[str, Any]]:
    """Findings of ``run_id`` for the plan's cases, read bucket by bucket (ranges, and ids when filtered)."""
    out: list[dict[str, Any]] = []
    per_bucket = ids_by_bucket(plan.buckets, (c.case_id for c in cases)) if plan.filtered else None
    for i, b in enumerate(plan.buckets):
        params: dict[str, Any] = {"run_id": run_id, "lo": b.lo, "hi": b.hi}
        extra = ""
        if per_bucket is not None:
            if not per_bucket[i]:
                continue
            extra = "AND has({ids:Array(String)}, case_id)"
            params["ids"] = per_bucket[i]
        out.extend(wh.query(
            f"SELECT {_FINDING_COLUMNS} FROM findings FINAL WHERE run_id = {{run_id:String}} "
            f"AND case_id >= {{lo:String}} AND case_id <= {{hi:String}} {extra} ORDER BY case_id, finding_id",
            params))
    return out


def finding_rows(findings: Iterable[Finding], run_id: str) -> list[dict[str, Any]]:
    """Findings as the warehouse returns them (plus run id and category), for a diff without a store."""
    rows = []
    for f in findings:
        row = msgspec.structs.asdict(f)
        row["run_id"] = run_id
        row["category"] = f.rule.split(".", 1)[0]
        rows.append(row)
    return rows


def row_to_finding(row: dict[str, Any]) -> Finding:
    """A stored finding back as the engine made it (times in UTC, as the engine gives them)."""
    fields = {k: row[k] for k in Finding.__struct_fields__}
    for k in ("fired_at", "deadline"):
        if isinstance(fields[k], datetime):
            fields[k] = fields[k].astimezone(UTC)
    return Finding(**fields)


def clear_run(wh: Any, run_id: str) -> bool:
    """Drop an earlier replay's findings and notes of ``run_id`` before it is run afresh; True if any."""
    check_run_id(run_id)
    p = {"run_id": run_id}
    n = int(wh.query("SELECT count() AS n FROM findings WHERE run_id = {run_id:String}", p)[0]["n"])
    m = int(wh.query("SELECT count() AS n FROM notes WHERE run_id = {run_id:String}", p)[0]["n"])
    for table, count in (("findings", n), ("notes", m)):
        if not count:
            continue
        sql = f"ALTER TABLE {table} DELETE WHERE run_id = {{run_id:String}}"
        try:
            wh.query(sql + " SETTINGS mutations_sync = 2", p)
        except Exception:  # noqa: BLE001 - servers too old for the setting: the mutation still applies
            wh.query(sql, p)
    return bool(n or m)


def engines_for(choice: CatalogChoice, catalogs_dir: str | None, rules_config: str | None,
                calendar: WorkCalendar | None = None) -> Engines:
    """The engines of a replay from its stored options (history directory, catalog choice, thresholds)."""
    history = load_catalog_history(directory=catalogs_dir)
    return Engines(choice, history, load_rule_config(rules_config), calendar)


def intake_day(events: Iterable[Mapping[str, Any]]) -> date | None:
    """The day whose catalog the engine picks by date: the latest ``accepted``, else the first ``submitted``."""
    acc = [e["occurred_at"] for e in events if e.get("valid", True) and e["event_type"] == "accepted"]
    sub = [e["occurred_at"] for e in events if e.get("valid", True) and e["event_type"] == "submitted"]
    t = max(acc) if acc else min(sub) if sub else None
    return china_date(t.timestamp()) if t is not None else None


def gather_evidence(source: Source, engines: Engines, diff: FindingsDiff) -> dict[str, CaseEvidence]:
    """For every case in the diff: its stored lines, and the catalogs and item each side used."""
    ids = diff.cases()
    if not ids:
        return {}
    lines = source.evidence(ids)
    recorded = source.recorded_for(ids)
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in diff.entries:
        for row in (e.live, e.replay):
            if row is not None:
                rows[e.case_id].append(row)
    label = engines.choice.describe() if engines.choice.mode != "recorded" else None
    out: dict[str, CaseEvidence] = {}
    for cid in ids:
        evs = lines.get(cid, [])
        rec = recorded.get(cid)
        live_v = rec or next((r["catalog_version"] for r in rows[cid] if r.get("run_id") == LIVE_RUN
                              and r.get("catalog_version")), None)
        used = engines.catalog_for(rec, intake_day(evs))
        item_code = next((r["item_code"] for r in rows[cid] if r.get("item_code")), None)
        old_cat = engines.history.version(live_v) if live_v else None
        changes: list[str] = []
        if item_code is not None and old_cat is not None:
            changes = item_changes(old_cat.item(item_code), used.item(item_code))
        out[cid] = CaseEvidence(evs, live_v, used.version, item_code, changes, label)
    return out
