"""The embedded warehouse: ClickHouse in-process through chDB, data in a local directory (default ``./data``).

chDB runs one ClickHouse engine per process, bound to one data directory, and takes an exclusive
``flock`` on ``<dir>/status``. Two consequences shape this module:

* A second process opening the same directory gets a bare "Error initializing EmbeddedServer" from
  chDB (the useful "Cannot lock file" only goes to stderr). We probe the same lock first and say which
  directory and which PID hold it, so the user sees a sentence, not a hang or a C++ trace.
* Inside one process every warehouse on that directory shares one session (closing one must not
  close the others), and a different directory cannot be opened until the first is closed.

Writes go through Arrow: ``INSERT … SELECT … FROM Python(table)`` reads the columns without any text
format, so aware datetimes arrive as UTC instants (no naive-time or epoch-in-JSON traps) and a million
rows take about two seconds. A process must not fork after opening: the child would share the
engine's threads and locks; we refuse use from a forked child with a clear error.
"""

from __future__ import annotations

import fcntl
import itertools
import operator
import os
import threading
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rules.facts import CaseFacts
from schemas.events import EVENT_TYPES
from warehouse.base import BaseWarehouse, WarehouseError, WarehouseLocked, columns_of, default_column
from warehouse.rows import event_columns
from warehouse.sql import MODERN, bind

DATABASE = "esup"
_TS = pa.timestamp("ms", tz="UTC")
_TS_US = pa.timestamp("us", tz="UTC")
_DEC = pa.decimal128(18, 4)
_INTS = {"u8": pa.uint8(), "nu8": pa.uint8(), "u16": pa.uint16(), "u32": pa.uint32(), "u64": pa.uint64()}
_TAGS = {cls: tag for tag, cls in EVENT_TYPES.items()}
_registry_lock = threading.Lock()
_open: dict[Path, list[Any]] = {}  # path -> [session, refcount, io lock]


def _forget_after_fork() -> None:
    _open.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _probe_lock(path: Path) -> None:
    """Raise WarehouseLocked if another process holds ``<path>/status`` (chDB's own lock)."""
    status = path / "status"
    if not status.exists():
        return
    fd = os.open(status, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = "?"
            try:
                for line in status.read_text(errors="replace").splitlines():
                    if line.startswith("PID:"):
                        pid = line.split(":", 1)[1].strip()
            except OSError:
                pass
            raise WarehouseLocked(
                f"the warehouse data directory {path} is in use by another process (PID {pid}): another esup "
                f"process holds it, and chDB lets only one process open a directory. Stop that process, or "
                f"point this one at another directory (--target), or use a ClickHouse server (CLICKHOUSE_URL)."
            ) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(path: Path) -> list[Any]:
    from chdb.session import Session  # imported here: 0.3 s and 300 MB, only when actually used

    with _registry_lock:
        entry = _open.get(path)
        if entry is not None:
            entry[1] += 1
            return entry
        if _open:
            other = next(iter(_open))
            raise WarehouseError(
                f"this process already has the embedded warehouse at {other} open; chDB serves one data "
                f"directory per process, so {path} cannot be opened until that one is closed")
        _probe_lock(path)
        try:
            session = Session(str(path))
        except RuntimeError as exc:
            _probe_lock(path)  # the usual cause; raises the clear error
            raise WarehouseError(f"cannot open the chDB data directory {path}: {exc}") from exc
        entry = [session, 1, threading.Lock()]
        _open[path] = entry
        return entry


def _release(path: Path) -> None:
    with _registry_lock:
        entry = _open.get(path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _open[path]
            entry[0].close()


def _arrow(name: str, kind: str, values: list[Any]) -> pa.Array:
    """One column of Python values as Arrow, with the checks that keep times and money exact."""
    if kind in ("dt", "ndt"):
        arr = _times(name, values)
        if kind == "dt" and arr.null_count:
            raise ValueError(f"column {name}: None where a time is required")
        return arr
    if kind == "str":
        arr = pa.array(values, pa.string())
        return pc.fill_null(arr, "") if arr.null_count else arr
    if kind == "nstr":
        return pa.array(values, pa.string())
    if kind == "bytes":
        try:
            return pa.array(values, pa.binary())
        except (TypeError, pa.ArrowTypeError):
            return pa.array([v.encode() if isinstance(v, str) else v for v in values], pa.binary())
    if kind in _INTS:
        try:
            return pa.array(values, _INTS[kind])
        except (TypeError, pa.ArrowTypeError, pa.ArrowInvalid):
            return pa.array([None if v is None else int(v) for v in values], _INTS[kind])
    if kind == "dec":
        try:
            return pa.array(values, _DEC)
        except (TypeError, pa.ArrowTypeError, pa.ArrowInvalid):
            q = Decimal("0.0001")
            # more than 4 decimals: truncated, as the JSON path (toDecimal64) does
            return pa.array([Decimal(str(v or 0)).quantize(q, ROUND_DOWN) for v in values], _DEC)
    if kind == "strs":
        return pa.array(values, pa.list_(pa.string()))
    raise ValueError(f"column {name}: unknown kind {kind}")


def _naive(name: str, values: list[Any]) -> ValueError:
    bad = next(v for v in values if v is not None and v.tzinfo is None)
    return ValueError(f"column {name}: naive datetime {bad!r}; the warehouse stores instants, "
                      "pass aware datetimes (e.g. tzinfo=CHINA_TZ)")


_OFFSET = r"(Z|[+-]\d\d:\d\d(:\d\d(\.\d+)?)?)$"


def _times(name: str, values: list[Any]) -> pa.Array:
    """Aware datetimes -> UTC milliseconds, refusing naive ones, without a Python loop per value.

    A column that repeats a few objects (one ``received_at`` per read batch) converts each distinct
    object once. Otherwise msgspec writes RFC 3339 text with the offset and Arrow checks and parses it,
    both in C: about 40 % less time than Arrow's own per-object conversion, the same instants (tested).
    A naive datetime has no offset in that text, which is how it is caught.
    """
    n = len(values)
    if n >= 64 and len({id(values[i]) for i in range(0, n, n // 16)}) <= 2:
        ids = np.fromiter(map(id, values), dtype=np.int64, count=n)
        starts = np.concatenate(([0], np.flatnonzero(ids[1:] != ids[:-1]) + 1))  # runs of one object
        if len(starts) * 8 <= n:
            distinct = [values[i] for i in starts.tolist()]
            if any(v is not None and v.tzinfo is None for v in distinct):
                raise _naive(name, values)
            lengths = np.diff(np.append(starts, n))
            return pa.array(distinct, _TS).take(pa.array(np.repeat(np.arange(len(starts)), lengths)))
    text = pa.array(msgspec.to_builtins(values), pa.string())
    aware = pc.match_substring_regex(text, _OFFSET)
    if (pc.sum(aware).as_py() or 0) != len(text) - text.null_count:
        raise _naive(name, values)
    return pc.cast(pc.cast(text, _TS_US), _TS, safe=False)


Prepared = tuple[str, pa.Table, str]  # table, batch, "(columns) SELECT … FROM Python(_esup_batch)"
_raw_of, _received_of, _event_of = operator.itemgetter(1), operator.itemgetter(2), operator.itemgetter(0)
_EVENT_TYPES = frozenset(_TAGS)
_TIME_WITH_OFFSET = "'(Z|[+-][0-9][0-9]:[0-9][0-9](:[0-9][0-9])?)$'"
_JSON_TYPE = {"str": "Nullable(String)", "nstr": "Nullable(String)", "dt": "Nullable(String)",
              "ndt": "Nullable(String)", "u8": "UInt64", "u16": "UInt64", "u32": "UInt64", "u64": "UInt64",
              "nu8": "Nullable(UInt8)", "dec": "Nullable(String)", "strs": "Array(String)"}


def _json_source(fields: list[tuple[str, str]], extra: list[tuple[str, str]]) -> str:
    """INSERT source extracting ``fields`` from JSON objects in column ``canon`` (keys = column names).

    One JSONExtract per row into a named tuple (one parse), times parsed from their RFC 3339 text
    (with offset: a text without one is refused, never read in some zone), money from decimal text.
    ``extra`` are (column, expression) pairs from the batch's other columns.
    """
    def expr(name: str, kind: str) -> str:
        v = f"tupleElement(t, '{name}')"
        return {"str": f"ifNull({v}, '')", "dt": f"parseDateTime64BestEffort(assumeNotNull({v}), 3, 'UTC')",
                "ndt": f"parseDateTime64BestEffortOrNull({v}, 3, 'UTC')",
                "dec": f"toDecimal64(ifNull({v}, '0'), 4)"}.get(kind, v)

    tuple_type = ", ".join(f"`{name}` {_JSON_TYPE[kind]}" for name, kind in fields)
    columns = ", ".join([name for name, _ in fields] + [name for name, _ in extra])
    select = ", ".join([expr(name, kind) for name, kind in fields] + [e for _, e in extra])
    times = [name for name, kind in fields if kind in ("dt", "ndt")]
    naive = " OR ".join(f"NOT match(ifNull(tupleElement(t, '{n}'), 'Z'), {_TIME_WITH_OFFSET})" for n in times) or "0"
    return (f"({columns}) SELECT {select} FROM (SELECT JSONExtract(canon, 'Tuple({tuple_type})') AS t, * "
            f"FROM Python(_esup_batch)) WHERE throwIf({naive}, "
            "'a time without UTC offset reached the warehouse; pass aware datetimes') = 0")


# Events: the canonical JSON has no whitespace, no unknown keys (msgspec drops them), each key once at
# the top level and none of these names nested, and omits None fields — so the plain scanners
# (simpleJSON*) read it exactly, at a fraction of a full parse's cost.
_EVENTS_FROM_JSON = f"""(case_id, occurred_at, event_id, event_type, source, recorded_at, received_at, officer_id,
 level, valid, error, position, raw)
SELECT simpleJSONExtractString(canon, 'case_id'), parseDateTime64BestEffort(occ, 3, 'UTC'),
       simpleJSONExtractString(canon, 'event_id'), simpleJSONExtractString(canon, 'event_type'),
       simpleJSONExtractString(canon, 'source'), if(rec = '', NULL, parseDateTime64BestEffort(rec, 3, 'UTC')),
       received_at, simpleJSONExtractString(canon, 'officer_id'), simpleJSONExtractUInt(canon, 'level'),
       1, '', 0, raw
FROM (SELECT simpleJSONExtractString(canon, 'occurred_at') AS occ, simpleJSONExtractString(canon, 'recorded_at') AS rec,
             canon, received_at, raw
      FROM Python(_esup_batch))
WHERE throwIf(NOT match(occ, {_TIME_WITH_OFFSET}) OR NOT (rec = '' OR match(rec, {_TIME_WITH_OFFSET})),
              'a time without UTC offset reached the warehouse; pass aware datetimes') = 0"""
_FACTS_FROM_JSON = _json_source(list(columns_of("case_facts")), [])
_event_json = msgspec.json.Encoder(decimal_format="number")
_facts_json = msgspec.json.Encoder(decimal_format="string")


def _over(blob: bytes, ends: np.ndarray) -> pa.Array:
    """A binary column whose values are ``blob`` cut before each offset in ``ends``: Arrow reads the
    bytes object itself (no copy, nothing allocated per value)."""
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(blob)])


def _json_lines(encoder: msgspec.json.Encoder, objs: list[Any]) -> pa.Array:
    """One JSON object per struct, as an Arrow column: msgspec writes them all in one C call, numpy
    finds the line ends (JSON escapes newlines inside strings, so a newline only ends an object) and
    each value keeps its newline, which JSON reads as whitespace."""
    blob = encoder.encode_lines(objs)
    ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 10) + 1
    if len(ends) != len(objs):
        raise ValueError(f"{len(ends)} JSON lines for {len(objs)} objects")
    return _over(blob, ends)


def _binary(values: list[Any]) -> pa.Array:
    """Raw lines as a binary column: one join and their lengths (pa.array appends value by value)."""
    try:
        blob = b"".join(values)
    except TypeError:  # a str among them (a caller's test line): the general path encodes it
        return _arrow("raw", "bytes", values)
    return _over(blob, np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values))))


def _aware_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts; a time column without a zone (an expression result) is UTC in chDB, say so."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            table = table.set_column(i, field.name, table.column(i).cast(pa.timestamp(field.type.unit, tz="UTC")))
    return table.to_pylist()


class ChdbWarehouse(BaseWarehouse):
    kind = "chdb"
    dialect = MODERN
    database = DATABASE

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create the warehouse data directory {self.path}: {exc}") from exc
        self._pid = os.getpid()
        self._entry = _acquire(self.path)
        self._closed = False
        self.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self.execute(f"USE {DATABASE}")

    def describe(self) -> str:
        return f"chDB warehouse at {self.path}"

    def _session(self) -> Any:
        if self._closed:
            raise WarehouseError(f"{self.describe()} is closed")
        if os.getpid() != self._pid:
            raise WarehouseError(
                f"{self.describe()} was opened in process {self._pid} before a fork; chDB cannot be used "
                "from a forked child. Open the warehouse in the child (after the parent closed it).")
        return self._entry[0]

    def _ensure_database(self) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")

    def execute(self, sql: str) -> None:
        session = self._session()
        with self._entry[2]:
            try:
                session.query(sql, "CSV")
            except RuntimeError as exc:
                raise WarehouseError(f"chDB: {exc}") from exc

    def _run(self, sql: str, params: dict[str, Any] | None, fmt: str) -> Any:
        text, bound = bind(sql, params, "chdb", self.dialect)
        session = self._session()
        with self._entry[2]:
            try:
                return session.query(text, fmt, params=bound)
            except RuntimeError as exc:
                raise WarehouseError(f"chDB: {exc}") from exc

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return _aware_rows(self._run(sql, params, "ArrowTable"))

    def query_bytes(self, sql: str, params: dict[str, Any] | None = None) -> bytes:
        """The bytes a query writes in format RawBLOB: each row's one value unescaped, the rows one after
        another with nothing between them (put a separator in the value when there are several).

        For results that are one big string (a replay bucket's lines): no Arrow table and no Python
        object per row.
        """
        return self._run(sql, params, "RawBLOB").bytes()

    def prepare(self, table: str, columns: dict[str, list[Any]]) -> Prepared | None:
        """Columns of Python values -> an Arrow table ready to write (the GIL-bound half of an insert)."""
        spec = columns_of(table)
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return None
        arrays = {}
        for name, kind in spec:
            values = columns.get(name)
            if values is None:
                values = default_column(kind, n)
            elif len(values) != n:
                raise ValueError(f"{table}.{name}: {len(values)} values, expected {n}")
            arrays[name] = _arrow(name, kind, values)
        names = ", ".join(arrays)
        return table, pa.table(arrays), f"({names}) SELECT {names} FROM Python(_esup_batch)"

    def prepare_events(self, items: list[tuple[Any, bytes, datetime]]) -> list[Prepared]:
        """Lines -> batches for ``events``; valid events take the fast path.

        Python hands chDB, per valid event, only its canonical JSON (msgspec, in C), the raw bytes and
        ``received_at``; chDB extracts the columns on the writer thread, where the GIL is free. The
        canonical JSON is the validated event itself, re-encoded, never the raw line, so the stored
        columns are exactly what the engine saw (a time fixed by ``naive_tz``, a duplicated key in the
        line …). Invalid lines, rare, take the column path.
        """
        evs = list(map(_event_of, items))
        if set(map(type, evs)) <= _EVENT_TYPES:
            valid: list[tuple[Any, bytes, datetime]] = items
            invalid: list[tuple[Any, bytes, datetime]] = []
        else:
            is_valid = list(map(_EVENT_TYPES.__contains__, map(type, evs)))
            valid = list(itertools.compress(items, is_valid))
            invalid = list(itertools.compress(items, map(operator.not_, is_valid)))
            evs = list(itertools.compress(evs, is_valid))
        out: list[Prepared] = []
        if valid:
            batch = pa.table({
                "canon": _json_lines(_event_json, evs),
                "received_at": _times("received_at", list(map(_received_of, valid))),
                "raw": _binary(list(map(_raw_of, valid))),
            })
            out.append(("events", batch, _EVENTS_FROM_JSON))
        if invalid:
            prepared = self.prepare("events", event_columns(invalid))
            if prepared is not None:
                out.append(prepared)
        return out

    def prepare_facts(self, facts: list[CaseFacts]) -> Prepared | None:
        """Case facts -> a batch: their JSON (msgspec, in C), the columns extracted by chDB."""
        if not facts:
            return None
        return "case_facts", pa.table({"canon": _json_lines(_facts_json, facts)}), _FACTS_FROM_JSON

    def write(self, prepared: Prepared | None) -> None:
        """Store a prepared batch (the engine's half: chDB releases the GIL while it works)."""
        if prepared is None:
            return
        table, _esup_batch, source = prepared  # the batch is read by name by chDB's Python() table function
        # optimize_on_insert=0: do not de-duplicate inside the inserted block (a third of the insert's
        # CPU); duplicates collapse at merge time and every read uses FINAL or uniqExact anyway.
        sql = f"INSERT INTO {DATABASE}.{table} {source} SETTINGS optimize_on_insert = 0"
        session = self._session()
        with self._entry[2]:
            try:
                session.query(sql, "CSV")
            except RuntimeError as exc:
                raise WarehouseError(f"chDB insert into {table}: {exc}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if os.getpid() == self._pid:
                _release(self.path)
