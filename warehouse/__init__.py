"""The ClickHouse warehouse: raw events, case facts, findings, notes and alert deliveries.

One small interface, two backends:

* **embedded** (the default): chDB, ClickHouse in-process, data in a directory (``./data``). One
  process owns a directory; a second gets :class:`WarehouseLocked` with the directory and the PID.
* **server**: a ClickHouse server over the native protocol, from ``CLICKHOUSE_URL`` or a
  ``clickhouse://user:pass@host:9000/db`` target (18.16 and later; see schemas/README-warehouse.md).

Writes are idempotent (deterministic ids, ReplacingMergeTree, set-valued aggregates), so at-least-once
delivery, a retried batch or a replay stores every fact once. :class:`Sink` batches writes;
``warehouse.reads`` holds the questions other parts ask.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

from warehouse.base import WarehouseError, WarehouseLocked
from warehouse.sink import Sink
from warehouse.tables import TABLES

DEFAULT_DATA_DIR = "./data"

__all__ = ["DEFAULT_DATA_DIR", "Sink", "TABLES", "Warehouse", "WarehouseError", "WarehouseLocked",
           "open_warehouse"]


@runtime_checkable
class Warehouse(Protocol):
    kind: str  # "chdb" | "server"

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied by this call (empty when up to date)."""
        ...

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Write rows (dicts of column -> value) to one of ``TABLES``; idempotent by the table's key."""
        ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a SELECT with ``{name:Type}`` parameters (never format values into SQL); aware datetimes back."""
        ...

    def close(self) -> None: ...


def open_warehouse(target: str | None = None) -> Any:
    """Open the warehouse named by ``target``.

    ``None`` -> ``CLICKHOUSE_URL`` if set, else chDB at ``./data``; ``"clickhouse://…"`` or
    ``"clickhouses://…"`` -> a server; ``"chdb:///abs/dir"``, ``"chdb://rel/dir"``, ``"chdb:rel/dir"`` or a
    plain directory path -> chDB in that directory. The returned object satisfies :class:`Warehouse`.
    """
    if target is None:
        target = os.environ.get("CLICKHOUSE_URL") or DEFAULT_DATA_DIR
    if target.startswith(("clickhouse://", "clickhouses://")):
        from warehouse.server import ServerWarehouse

        return ServerWarehouse(target)
    if target.startswith("chdb:"):
        path = target[len("chdb:"):]
        path = path[2:] if path.startswith("//") else path  # chdb:///abs -> /abs, chdb://rel -> rel
    elif "://" in target:
        raise WarehouseError(f"unknown warehouse target {target!r}: use a directory, chdb:DIR or clickhouse://…")
    else:
        path = target
    if not path:
        raise WarehouseError("chdb: needs a directory, e.g. chdb:///var/lib/esup or chdb:data")
    from warehouse.embedded import ChdbWarehouse

    return ChdbWarehouse(path)
