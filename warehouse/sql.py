"""SQL that runs on chDB 26.x and on ClickHouse servers back to 18.16: dialects, DDL rendering, parameters.

Two differences matter, and both are handled here so the rest of the package writes one SQL text:

* **Types.** 18.16 has no DateTime64, no codecs and only an experimental LowCardinality. The DDL in
  ``schemas/ddl`` uses placeholders (``{{DT}}``, ``{{LC}}``, ``{{LCN}}``, ``{{ZSTD}}``) that a
  :class:`Dialect` fills in. Times are always stored as instants in an ``Asia/Shanghai`` column, so
  ``toDate(col)`` and ``toYYYYMM(col)`` are China dates and months without extra arguments.
* **Parameters.** chDB binds ``{name:Type}`` in the engine; 18.16 has no query parameters, so for a
  server the driver substitutes ``%(name)s`` with values it escapes itself. Queries are written with
  ``{name:Type}`` and :func:`bind` rewrites them for the backend. Times travel as integers (epoch ms or
  s) and are converted in SQL: a datetime formatted as text would be read in some time zone, which is
  the trap that moves deadlines by eight hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

DDL_DIR = Path(__file__).resolve().parent.parent / "schemas" / "ddl"
TZ = "Asia/Shanghai"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Dialect:
    """What the target ClickHouse can do; chosen from its version at connect time."""

    name: str
    datetime64: bool  # DateTime64 with milliseconds (20.1+); else DateTime, whole seconds
    low_cardinality: bool  # LowCardinality without an experimental setting (19.x+)
    codecs: bool  # column CODEC(...) (19.x+)
    part_settings: bool = False  # MergeTree setting min_bytes_for_wide_part, i.e. compact parts (20.3+)

    def placeholders(self) -> dict[str, str]:
        return {
            "DT": f"DateTime64(3, '{TZ}')" if self.datetime64 else f"DateTime('{TZ}')",
            "LC": "LowCardinality(String)" if self.low_cardinality else "String",
            "LCN": "LowCardinality(Nullable(String))" if self.low_cardinality else "Nullable(String)",
            "ZSTD": "CODEC(ZSTD(1))" if self.codecs else "",
        }

    def guards(self) -> dict[str, bool]:
        """``{{IF_X}}`` at the start of a statement: the statement exists only where the server can run it."""
        return {"IF_PART_SETTINGS": self.part_settings}


MODERN = Dialect("modern", datetime64=True, low_cardinality=True, codecs=True, part_settings=True)
MODERN_20_1 = Dialect("modern", datetime64=True, low_cardinality=True, codecs=True, part_settings=False)
LEGACY = Dialect("legacy", datetime64=False, low_cardinality=False, codecs=False)


def dialect_for_version(version: str) -> Dialect:
    """ClickHouse 20.1 introduced DateTime64, 20.3 compact parts; older servers (18.16 is the oldest
    tested) get LEGACY."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return LEGACY
    if (major, minor) >= (20, 3):
        return MODERN
    return MODERN_20_1 if (major, minor) >= (20, 1) else LEGACY


def check_identifier(name: str, what: str = "name") -> str:
    """Database, table and cluster names are the only things ever put into SQL text: check them."""
    if not _IDENT.match(name or ""):
        raise ValueError(f"invalid {what} {name!r}: use letters, digits and underscores")
    return name


# ---------------------------------------------------------------------------------------------- DDL

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_GUARD = re.compile(r"\s*\{\{(IF_[A-Z_]+)\}\}\s*")
_CREATE = re.compile(r"CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)
_ENGINE = re.compile(r"ENGINE\s*=\s*(Replacing|Aggregating|Summing|Collapsing|)MergeTree(?:\(([^)]*)\))?")


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: full-line ``--`` comments dropped, split on ``;``.

    The DDL files contain no ``;`` inside literals, which keeps this simple and predictable.
    """
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def render(statement: str, dialect: Dialect, cluster: str | None = None, database: str = "default") -> str:
    """Fill a DDL statement's placeholders; with ``cluster``, make it ``ON CLUSTER`` and Replicated.

    Replicated tables get the conventional ZooKeeper path ``/clickhouse/tables/{shard}/<db>/<table>``
    and ``{replica}`` from the server's ``<macros>``; the database and table are written literally
    because 18.16 has no ``{database}``/``{table}`` macros.

    A statement that starts with a guard (``{{IF_PART_SETTINGS}}``) renders to ``""`` where the dialect
    lacks that feature: the caller skips it (a tuning that older servers simply do without).
    """
    guard = _GUARD.match(statement)
    if guard:
        wanted = dialect.guards().get(guard.group(1))
        if wanted is None:
            raise ValueError(f"unknown DDL guard {{{{{guard.group(1)}}}}}")
        if not wanted:
            return ""
        statement = statement[guard.end():]
    values = dialect.placeholders()
    values["ON_CLUSTER"] = f"ON CLUSTER {check_identifier(cluster, 'cluster')}" if cluster else ""

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ValueError(f"unknown DDL placeholder {{{{{key}}}}}")
        return values[key]

    out = _PLACEHOLDER.sub(fill, statement)
    if cluster:
        created = _CREATE.search(out)
        table = created.group(1) if created else "unknown"

        def replicate(m: re.Match[str]) -> str:
            args = [f"'/clickhouse/tables/{{shard}}/{check_identifier(database)}/{table}'", "'{replica}'"]
            if m.group(2):
                args.append(m.group(2))
            return f"ENGINE = Replicated{m.group(1)}MergeTree({', '.join(args)})"

        out = _ENGINE.sub(replicate, out)
    return out


# --------------------------------------------------------------------------------------- parameters

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
_INT_TYPES = re.compile(r"^U?Int(8|16|32|64)$")


def _to_ms(value: Any, name: str) -> int:
    if not isinstance(value, datetime):
        raise TypeError(f"parameter {name!r} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"parameter {name!r} is a naive datetime; pass an aware one (e.g. tzinfo=CHINA_TZ)")
    return round(value.timestamp() * 1_000_000) // 1000


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _escaped(value: str) -> str:
    """chDB reads a String parameter in ClickHouse's escaped (TSV) form: a backslash, tab or newline in the
    value must be escaped, or the value is refused (a lone backslash) or changed (``\\t`` read as a tab)."""
    return value.translate(_TSV_ESCAPES)


def _check(name: str, ch_type: str, value: Any) -> None:
    if _INT_TYPES.match(ch_type):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"parameter {name!r} must be an int for {ch_type}")
    elif ch_type == "String":
        if not isinstance(value, str):
            raise TypeError(f"parameter {name!r} must be a str for String")
    elif ch_type == "Array(String)":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"parameter {name!r} must be a list of str for Array(String)")
    elif ch_type == "Date":
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError(f"parameter {name!r} must be a date for Date")
    elif ch_type == "Float64":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"parameter {name!r} must be a number for Float64")
    elif ch_type != "DateTime":
        raise ValueError(f"parameter {name!r}: type {ch_type} is not supported by warehouse.sql.bind")


def bind(sql: str, params: dict[str, Any] | None, backend: str, dialect: Dialect) -> tuple[str, dict[str, Any] | None]:
    """Rewrite ``{name:Type}`` placeholders for ``backend`` ("chdb" or "server") and convert the values.

    Supported types: String, (U)Int8..64, Float64, Date, DateTime (an aware datetime: an instant),
    Array(String). Values are checked against the declared type on both backends, so a query that
    passes on chDB does not change meaning on a server.
    """
    params = params or {}
    used: dict[str, Any] = {}

    def sub(m: re.Match[str]) -> str:
        name, ch_type = m.group(1), m.group(2).strip()
        if name not in params:
            raise KeyError(f"query parameter {name!r} ({ch_type}) has no value")
        value = params[name]
        _check(name, ch_type, value)
        if ch_type == "DateTime":
            ms = _to_ms(value, name)
            if backend == "chdb":
                used[name] = ms
                return f"fromUnixTimestamp64Milli({{{name}:Int64}}, '{TZ}')"
            if dialect.datetime64:
                used[name] = ms
                return f"fromUnixTimestamp64Milli(toInt64(%({name})s), '{TZ}')"
            used[name] = ms // 1000
            return f"toDateTime(%({name})s, '{TZ}')"
        if ch_type == "Date":
            used[name] = value.isoformat()
            return f"{{{name}:Date}}" if backend == "chdb" else f"toDate(%({name})s)"
        if ch_type == "Array(String)":
            if backend == "chdb":
                used[name] = "[" + ",".join(_quote(v) for v in value) + "]"
                return f"{{{name}:Array(String)}}"
            used[name] = list(value)
            return f"CAST(%({name})s AS Array(String))"
        used[name] = _escaped(value) if backend == "chdb" and ch_type == "String" else value
        return f"{{{name}:{ch_type}}}" if backend == "chdb" else f"%({name})s"

    if backend == "server":
        if not _PARAM.search(sql):
            return sql, None
        sql = sql.replace("%", "%%")
    out = _PARAM.sub(sub, sql)
    return out, (used or None)
