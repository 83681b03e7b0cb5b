"""Expand a panel's SQL the way Grafana and the ClickHouse data source plugin do, to run it without Grafana.

A panel query passes three rewrites before ClickHouse sees it, and the tests and ``esup dashboards
check`` must reproduce them exactly, or a query that works here could fail on the wall screen:

1. **The plugin's frontend** (``grafana-clickhouse-datasource``, ``CHDatasource.applyConditionalAll``):
   ``$__conditionalAll(condition, $var)`` becomes ``1=1`` when the variable is "All" (``$__all``) or
   empty, and the condition otherwise.
2. **Grafana's template service**: ``${var:format}``, ``${var}`` and ``$var`` become the selected
   values. Formats used here: ``singlequote`` ('a','b'), ``sqlstring`` ('a','b' with ' doubled),
   ``csv`` and ``raw``; without a format the plugin joins a multi-value as 'a','b' and inserts a
   single value as it is. "All" expands to every option's value.
3. **The plugin's backend macros** (``pkg/macros/macros.go``), with the dashboard time range:
   ``$__timeFilter(c)`` → ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``,
   ``$__timeFilter_ms(c)`` (``fromUnixTimestamp64Milli``), ``$__fromTime`` / ``$__toTime`` →
   ``toDateTime(<s>)``, ``$__fromTime_ms`` / ``$__toTime_ms``, ``$__dateFilter(c)`` →
   ``c >= toDate('<from UTC date>') AND c <= toDate('<to UTC date>')``, ``$__timeInterval(c)`` →
   ``toStartOfInterval(toDateTime(c), INTERVAL <n> second)``, ``$__interval_s`` → ``<n>``.

Dates the plugin formats (``$__dateFilter``) are UTC dates; our panels avoid that macro and write
``toDate($__toTime, 'Asia/Shanghai')`` instead, so "today" is the China day at every hour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

ALL = "$__all"

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO = re.compile(r"\$__(\w+)\b")


def _macro_args(text: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of a call whose ``(`` is at ``open_paren``: split on top-level commas; and the index after ``)``."""
    depth = 0
    args: list[str] = []
    start = open_paren + 1
    for i in range(open_paren, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(text[start:i])
            start = i + 1
    raise ValueError(f"unbalanced parentheses after position {open_paren}: {text[open_paren:open_paren + 60]!r}")


def apply_conditional_all(sql: str, selected: Mapping[str, Sequence[str] | str]) -> str:
    """Step 1: the plugin's ``$__conditionalAll(condition, $var)``, innermost-last as the plugin does."""
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:
        args, end = _macro_args(sql, at + len(macro) - 1)
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll needs 2 arguments, got {len(args)}: {sql[at:end]!r}")
        name = args[1].strip().lstrip("$").strip("{}")
        value = selected.get(name)
        is_all = value is None or value == ALL or value == "" or (not isinstance(value, str) and list(value) == [ALL])
        sql = sql[:at] + ("1=1" if is_all else args[0]) + sql[end:]
    return sql


def _format(values: list[str], fmt: str | None, multi: bool) -> str:
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt in ("raw", None) and not multi:
        return values[0] if values else ""
    if fmt is None:  # the plugin's own format(): a multi-value becomes 'a','b'
        return "'" + "','".join(values) + "'"
    if fmt == "raw":
        return ",".join(values)
    raise ValueError(f"variable format {fmt!r} is not reproduced here; use singlequote, sqlstring, csv or raw")


def apply_variables(sql: str, selected: Mapping[str, Sequence[str] | str],
                    options: Mapping[str, Sequence[str]] | None = None) -> str:
    """Step 2: Grafana's template service. ``selected[name]`` is a value, a list, or ``ALL``; "All"
    expands to ``options[name]`` (every value the variable offers). Unknown names are left alone, as
    Grafana leaves them (macros such as ``$__timeFilter`` look like variables to it)."""
    options = options or {}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        if name not in selected:
            return m.group(0)
        value = selected[name]
        if value == ALL or (not isinstance(value, str) and list(value) == [ALL]):
            values, multi = list(options.get(name, [])), True
        elif isinstance(value, str):
            values, multi = [value], False
        else:
            values, multi = list(value), len(value) != 1
        return _format(values, fmt, multi)

    return _VAR.sub(sub, sql)


def apply_macros(sql: str, start: datetime, end: datetime, interval_s: int = 60) -> str:
    """Step 3: the plugin's backend macros for the time range ``[start, end]`` (aware datetimes)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    f_s, t_s = int(start.timestamp()), int(end.timestamp())
    f_ms, t_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    f_d, t_d = start.astimezone(UTC).date().isoformat(), end.astimezone(UTC).date().isoformat()
    interval_s = max(int(interval_s), 1)
    plain = {
        "fromTime": f"toDateTime({f_s})", "toTime": f"toDateTime({t_s})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({f_ms})", "toTime_ms": f"fromUnixTimestamp64Milli({t_ms})",
        "interval_s": str(interval_s),
    }
    with_args = {
        "timeFilter": lambda c: f"{c} >= toDateTime({f_s}) AND {c} <= toDateTime({t_s})",
        "timeFilter_ms": lambda c: f"{c} >= fromUnixTimestamp64Milli({f_ms}) AND {c} <= fromUnixTimestamp64Milli({t_ms})",
        "dateFilter": lambda c: f"{c} >= toDate('{f_d}') AND {c} <= toDate('{t_d}')",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {interval_s} second)",
        "timeInterval_ms": lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {interval_s * 1000} millisecond)",
    }
    out: list[str] = []
    pos = 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        out.append(sql[pos:m.start()])
        if name in with_args and m.end() < len(sql) and sql[m.end()] == "(":
            args, end_at = _macro_args(sql, m.end())
            if len(args) != 1:
                raise ValueError(f"$__{name} takes one argument, got {len(args)}")
            out.append(with_args[name](args[0].strip()))
            pos = end_at
        elif name in plain:
            out.append(plain[name])
            pos = m.end()
        else:
            raise ValueError(f"unknown macro $__{name} (the ClickHouse plugin would send it to the server as is)")
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, start: datetime, end: datetime, *, interval_s: int = 60,
           selected: Mapping[str, Sequence[str] | str] | None = None,
           options: Mapping[str, Sequence[str]] | None = None) -> str:
    """All three steps, in Grafana's order: the SQL ClickHouse receives for this panel."""
    selected = selected or {}
    sql = apply_conditional_all(sql, selected)
    sql = apply_variables(sql, selected, options)
    return apply_macros(sql, start, end, interval_s)
