"""What both backends share: checked inserts from dict rows, and the versioned migrations.

A backend only supplies ``insert_columns`` (columns of Python values in, stored rows out),
``query``/``execute`` and ``close``; everything that decides *what* is written lives here once, so
chDB and a server cannot disagree about it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from warehouse.sql import DDL_DIR, Dialect, render, split_statements
from warehouse.tables import ALLOWED, REQUIRED, TABLES, Column


class WarehouseError(RuntimeError):
    """A warehouse problem worth a clear sentence: wrong target, locked directory, bad schema state."""


class WarehouseLocked(WarehouseError):
    """Another process owns the embedded data directory (chDB allows one process per directory)."""


LEDGER = "schema_migrations"
LEDGER_COLUMNS: tuple[Column, ...] = (("name", "str"), ("checksum", "str"), ("applied_at", "dt"))
LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations {{ON_CLUSTER}} "
    "(name String, checksum String, applied_at {{DT}}) ENGINE = ReplacingMergeTree ORDER BY name"
)

_DEFAULTS: dict[str, Any] = {"str": "", "bytes": b"", "u8": 0, "u16": 0, "u32": 0, "u64": 0,
                             "dec": Decimal(0), "strs": ()}


def default_column(kind: str, n: int) -> list[Any]:
    """A column of ``n`` defaults for a kind (None for the Nullable kinds)."""
    return [_DEFAULTS.get(kind)] * n


def columns_of(table: str) -> tuple[Column, ...]:
    if table == LEDGER:
        return LEDGER_COLUMNS
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; writable tables: {', '.join(TABLES)}") from None


def migration_files() -> list[tuple[str, str, list[str]]]:
    """(name, checksum, statements) of every migration in order. The checksum ignores comments."""
    out = []
    for path in sorted(DDL_DIR.glob("*.sql")):
        statements = split_statements(path.read_text(encoding="utf-8"))
        checksum = hashlib.sha256("\n;\n".join(statements).encode()).hexdigest()[:16]
        out.append((path.stem, checksum, statements))
    return out


class BaseWarehouse:
    kind: str = "?"
    dialect: Dialect
    database: str = "default"
    cluster: str | None = None

    # -- supplied by the backends -------------------------------------------------------------
    def prepare(self, table: str, columns: dict[str, list[Any]]) -> Any:
        """Columns of Python values -> the backend's batch (CPU work in Python; may run on any thread)."""
        raise NotImplementedError

    def write(self, prepared: Any) -> None:
        """Store a prepared batch (I/O and engine work; the sink runs it on its writer thread)."""
        raise NotImplementedError

    def insert_columns(self, table: str, columns: dict[str, list[Any]]) -> None:
        self.write(self.prepare(table, columns))

    def prepare_events(self, items: list[tuple[Any, bytes, datetime]]) -> list[Any]:
        """Lines (event or InvalidEvent, raw bytes, received_at) -> batches for ``events``.

        A backend may override this with a faster path (chDB does); the result must be the same rows.
        """
        from warehouse.rows import event_columns

        prepared = self.prepare("events", event_columns(items))
        return [prepared] if prepared is not None else []

    def prepare_facts(self, facts: list[Any]) -> Any:
        """Case facts -> a batch for ``case_facts`` (a backend may override with a faster path)."""
        from warehouse.rows import facts_columns

        return self.prepare("case_facts", facts_columns(facts)) if facts else None

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def execute(self, sql: str) -> None:
        raise NotImplementedError

    def _ensure_database(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> BaseWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared -------------------------------------------------------------------------------
    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Write rows given as dicts of column -> value; absent columns take their defaults.

        Unknown columns, missing identity columns and values outside a closed vocabulary are refused
        before anything is written: a typo must not become a silently empty column.
        """
        spec = columns_of(table)
        if not rows:
            return
        names = {c for c, _ in spec}
        required = REQUIRED.get(table, frozenset())
        for i, row in enumerate(rows):
            unknown = row.keys() - names
            if unknown:
                raise ValueError(f"{table} row {i}: unknown column(s) {', '.join(sorted(unknown))}")
            missing = [c for c in required if row.get(c) is None]
            if missing:
                raise ValueError(f"{table} row {i}: missing {', '.join(sorted(missing))}")
        columns = {}
        for name, kind in spec:
            default = _DEFAULTS.get(kind)
            columns[name] = [row.get(name, default) for row in rows]
        check_vocabularies(table, columns)
        self.insert_columns(table, columns)

    def migrate(self) -> list[str]:
        """Apply the migrations in ``schemas/ddl`` not yet recorded; return the names applied now.

        Each statement is ``IF NOT EXISTS``, so a migration that died half way is simply re-run. A
        migration whose text changed after it was applied is an error: write a new migration instead.
        """
        self._ensure_database()
        self.execute(render(LEDGER_DDL, self.dialect, self.cluster, self.database))
        applied = {r["name"]: r["checksum"] for r in self.query("SELECT name, checksum FROM schema_migrations FINAL")}
        done: list[str] = []
        for name, checksum, statements in migration_files():
            if name in applied:
                if applied[name] != checksum:
                    raise WarehouseError(
                        f"migration {name} was changed after it was applied to {self.describe()} "
                        f"(checksum {applied[name]} -> {checksum}); add a new migration instead")
                continue
            for statement in statements:
                sql = render(statement, self.dialect, self.cluster, self.database)
                if sql:  # empty: a guarded statement this server does without
                    self.execute(sql)
            self.insert_columns(LEDGER, {"name": [name], "checksum": [checksum], "applied_at": [datetime.now(UTC)]})
            done.append(name)
        return done

    def describe(self) -> str:
        return f"{self.kind} warehouse"


def check_vocabularies(table: str, columns: dict[str, list[Any]]) -> None:
    for (tbl, col), allowed in ALLOWED.items():
        if tbl == table and col in columns:
            bad = set(columns[col]) - allowed
            if bad:
                raise ValueError(f"{table}.{col}: {sorted(map(str, bad))} not in {sorted(allowed)}")
