"""The server warehouse: a ClickHouse server over the native protocol (clickhouse-driver), ``CLICKHOUSE_URL``.

Tested against Debian's clickhouse-server 18.16 (the oldest this code supports; the dialect is picked
from ``version()``, see ``warehouse/sql.py``). Rows are sent as driver data parameters, column by
column: an inline ``INSERT … VALUES (…)`` text hangs on 18.16 through the driver, and columns are the
fast path anyway. Times are sent as integers (epoch seconds on 18.16, milliseconds where DateTime64
exists) so no time zone is ever guessed; results come back aware.

URL: ``clickhouse://user:password@host:9000/database`` (``clickhouses://`` for TLS). Extra query
parameters go to the driver (e.g. ``?connect_timeout=5``), except ``cluster=NAME``, which makes
``migrate`` issue ``ON CLUSTER NAME`` DDL with Replicated engines (also ``CLICKHOUSE_CLUSTER``).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, tzinfo
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from warehouse.base import BaseWarehouse, WarehouseError, columns_of, default_column
from warehouse.sql import bind, check_identifier, dialect_for_version

_Q = Decimal("0.0001")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


def printable_target(target: str | None) -> str | None:
    """A warehouse target fit to print or log: a ClickHouse URL without its password, a directory as it is."""
    if target and target.startswith(("clickhouse://", "clickhouses://")):
        return _redact(target)
    return target


class ServerWarehouse(BaseWarehouse):
    kind = "server"

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        parts = urlsplit(url)
        if parts.scheme not in ("clickhouse", "clickhouses"):
            raise WarehouseError(f"not a ClickHouse URL: {_redact(url)} (expected clickhouse://host:9000/db)")
        query = dict(parse_qsl(parts.query))
        self.cluster = query.pop("cluster", None) or os.environ.get("CLICKHOUSE_CLUSTER") or None
        if self.cluster:
            check_identifier(self.cluster, "cluster")
        self.database = check_identifier(parts.path.strip("/") or "default", "database")
        self.url = _redact(url)
        base = urlunsplit((parts.scheme, parts.netloc, "/{db}", urlencode(query), ""))
        self._client = Client.from_url(base.replace("{db}", self.database))
        self._bootstrap = Client.from_url(base.replace("{db}", "default"))
        self._lock = threading.Lock()
        self._closed = False
        try:
            version, zone = self._bootstrap.execute("SELECT version(), timezone()")[0]
        except Exception as exc:  # noqa: BLE001 - any connection failure gets the same clear message
            raise WarehouseError(f"cannot reach ClickHouse at {self.url}: {exc}") from exc
        self.server_version: str = version
        self.server_tz: tzinfo = ZoneInfo(zone)
        self.dialect = dialect_for_version(version)

    def describe(self) -> str:
        return f"ClickHouse {self.server_version} at {self.url}"

    def _run(self, client: Any, sql: str, params: Any = None, **kw: Any) -> Any:
        from clickhouse_driver import errors

        if self._closed:
            raise WarehouseError(f"{self.describe()} is closed")
        with self._lock:
            try:
                return client.execute(sql, params, **kw)
            except errors.ServerException as exc:
                if exc.code == 81:
                    raise WarehouseError(f"database {self.database} does not exist on {self.describe()}: "
                                         "run `esup db migrate` first") from exc
                raise WarehouseError(f"ClickHouse {self.server_version}: {exc.message}") from exc
            except errors.Error as exc:
                raise WarehouseError(f"{self.describe()}: {exc}") from exc

    def _ensure_database(self) -> None:
        on_cluster = f" ON CLUSTER {self.cluster}" if self.cluster else ""
        self._run(self._bootstrap, f"CREATE DATABASE IF NOT EXISTS {self.database}{on_cluster}")

    def execute(self, sql: str) -> None:
        self._run(self._client, sql)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        text, bound = bind(sql, params, "server", self.dialect)
        rows, types = self._run(self._client, text, bound, with_column_types=True)
        names = [n for n, _ in types]
        naive_dt = [i for i, (_, t) in enumerate(types) if t.startswith(("DateTime", "Nullable(DateTime"))]
        out = []
        zone = self.server_tz
        for row in rows:
            if naive_dt:
                row = list(row)
                for i in naive_dt:
                    v = row[i]
                    if isinstance(v, datetime) and v.tzinfo is None:
                        row[i] = v.replace(tzinfo=zone)  # the driver returns zone-less results in server time
            out.append(dict(zip(names, row, strict=True)))
        return out

    def prepare(self, table: str, columns: dict[str, list[Any]]) -> tuple[str, list[list[Any]]] | None:
        """Columns of Python values -> the driver's columnar data (times as integers)."""
        spec = columns_of(table)
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return None
        data = []
        ms = self.dialect.datetime64
        for name, kind in spec:
            values = columns.get(name)
            if values is None:
                values = default_column(kind, n)
            elif len(values) != n:
                raise ValueError(f"{table}.{name}: {len(values)} values, expected {n}")
            data.append(_convert(name, kind, values, ms))
        return table, data

    def write(self, prepared: tuple[str, list[list[Any]]] | None) -> None:
        if prepared is None:
            return
        table, data = prepared
        names = ", ".join(name for name, _ in columns_of(table))
        self._run(self._client, f"INSERT INTO {table} ({names}) VALUES", data, columnar=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.disconnect()
            self._bootstrap.disconnect()


def _epoch(v: datetime, name: str, ms: bool) -> int:
    if v.tzinfo is None or v.utcoffset() is None:
        raise ValueError(f"column {name}: naive datetime {v!r}; pass aware datetimes (e.g. tzinfo=CHINA_TZ)")
    micros = round(v.timestamp() * 1_000_000)
    return micros // 1000 if ms else micros // 1_000_000


def _convert(name: str, kind: str, values: list[Any], ms: bool) -> list[Any]:
    """Python values as the driver writes them: times as integers, None where the column cannot hold it."""
    if kind == "dt":
        if any(v is None for v in values):
            raise ValueError(f"column {name}: None where a time is required")
        return [_epoch(v, name, ms) for v in values]
    if kind == "ndt":
        return [None if v is None else _epoch(v, name, ms) for v in values]
    if kind == "str":
        return ["" if v is None else v for v in values]
    if kind == "bytes":
        return [b"" if v is None else v for v in values]
    if kind in ("u8", "u16", "u32", "u64"):
        return [0 if v is None else int(v) for v in values]
    if kind == "nu8":
        return [None if v is None else int(v) for v in values]
    if kind == "dec":
        return [Decimal(str(v or 0)).quantize(_Q, ROUND_DOWN) for v in values]
    if kind == "strs":
        return [list(v or ()) for v in values]
    return list(values)
