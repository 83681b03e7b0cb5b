"""The insertable tables as Python sees them: column names, order and value kinds.

The DDL in ``schemas/ddl`` is the source of truth for ClickHouse; this module is the same list for the
code that turns Python values into columns (both backends need to know which column holds times,
money or arrays, and the server cannot be asked on every insert). ``tests/test_warehouse.py`` checks
that the two agree column by column on every backend, so they cannot drift apart silently.

Kinds:
  str     String / LowCardinality(String); None is stored as ''
  nstr    Nullable(String) variants
  bytes   String holding raw bytes exactly as given
  dt      DateTime64(3)/DateTime in Asia/Shanghai; an aware datetime (naive ones are refused)
  ndt     the same, Nullable
  u8..u32 unsigned integers (bool is accepted for u8)
  nu8     Nullable(UInt8) (bool accepted)
  dec     Decimal(18, 4), yuan
  strs    Array(String)
"""

from __future__ import annotations

Column = tuple[str, str]

TABLES: dict[str, tuple[Column, ...]] = {
    "events": (
        ("case_id", "str"), ("occurred_at", "dt"), ("event_id", "str"), ("event_type", "str"),
        ("source", "str"), ("recorded_at", "ndt"), ("received_at", "dt"), ("officer_id", "str"),
        ("level", "u8"), ("valid", "u8"), ("error", "str"), ("position", "u64"), ("raw", "bytes"),
    ),
    "case_facts": (
        ("case_id", "str"), ("version", "u32"), ("status", "str"), ("item_code", "nstr"),
        ("item_name", "nstr"), ("item_kind", "nstr"), ("department", "nstr"), ("window", "nstr"),
        ("region_code", "nstr"), ("catalog_version", "nstr"), ("applicant_name", "nstr"),
        ("applicant_id_number", "nstr"), ("applicant_phone", "nstr"), ("officers", "strs"),
        ("submitted_at", "ndt"), ("accepted_at", "ndt"), ("clock_start_at", "ndt"),
        ("promised_due_at", "ndt"), ("statutory_due_at", "ndt"), ("decided_at", "ndt"),
        ("outcome", "nstr"), ("completed_at", "ndt"), ("delivered_at", "ndt"),
        ("paused_working_days", "u32"), ("supplement_count", "u32"), ("extension_days", "u32"),
        ("fee_assessed", "dec"), ("fee_paid", "dec"), ("fee_waived", "dec"), ("fee_refunded", "dec"),
        ("rating_level", "nu8"), ("complaint_count", "u32"), ("on_time", "nu8"), ("last_event_at", "dt"),
    ),
    "findings": (
        ("run_id", "str"), ("case_id", "str"), ("finding_id", "str"), ("rule", "str"), ("category", "str"),
        ("severity", "str"), ("item_code", "nstr"), ("department", "nstr"), ("window", "nstr"),
        ("region_code", "nstr"), ("officer_id", "nstr"), ("fired_at", "dt"), ("deadline", "ndt"),
        ("event_id", "nstr"), ("message", "str"), ("basis", "str"), ("catalog_version", "nstr"),
        ("occurrence", "str"),
    ),
    "notes": (
        ("run_id", "str"), ("case_id", "str"), ("event_id", "str"), ("kind", "str"), ("message", "str"),
    ),
    "alert_deliveries": (
        ("delivery_id", "str"), ("attempt", "u16"), ("result", "str"), ("alert_id", "str"),
        ("finding_ids", "strs"), ("recipient", "str"), ("channel", "str"), ("kind", "str"),
        ("attempted_at", "dt"), ("error", "str"), ("digest", "u8"), ("detail", "str"),
    ),
    "alert_lifecycle": (
        ("alert_id", "str"), ("version", "u32"), ("status", "str"), ("severity", "str"),
        ("changed_at", "dt"), ("actor", "str"), ("reason", "str"), ("finding_ids", "strs"), ("detail", "str"),
    ),
    "event_chain": (
        ("case_id", "str"), ("position", "u32"), ("event_id", "str"), ("raw_sha256", "str"),
        ("prev_hash", "str"), ("hash", "str"), ("chained_at", "dt"),
    ),
}
"""Columns a caller may write, in DDL order (materialized columns such as events.raw_hash excluded)."""

REQUIRED: dict[str, frozenset[str]] = {
    "events": frozenset({"case_id", "occurred_at", "received_at", "raw"}),
    "case_facts": frozenset({"case_id", "version", "status", "last_event_at"}),
    "findings": frozenset({"run_id", "case_id", "finding_id", "rule", "severity", "fired_at"}),
    "notes": frozenset({"run_id", "case_id", "event_id", "kind"}),
    "alert_deliveries": frozenset({"delivery_id", "attempt", "result", "attempted_at"}),
    "alert_lifecycle": frozenset({"alert_id", "version", "status", "changed_at"}),
    "event_chain": frozenset({"case_id", "position", "raw_sha256", "prev_hash", "hash", "chained_at"}),
}
"""Identity and partition columns: a row without them would collapse with others or be misfiled."""

ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("alert_lifecycle", "status"): frozenset({"open", "acknowledged", "resolved", "dismissed"}),
    ("findings", "severity"): frozenset({"yellow", "red"}),
}
"""Closed vocabularies checked before writing (the columns are strings so the DDL stays portable)."""

AGGREGATES: dict[str, str] = {
    "daily_case_metrics": "case_facts",
    "daily_findings": "findings",
    "daily_deliveries": "alert_deliveries",
}
"""Aggregate tables kept by materialized views, and the base table that feeds each."""

DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "events": ("case_id", "occurred_at", "event_id", "raw_hash"),
    "case_facts": ("case_id",),
    "findings": ("run_id", "case_id", "finding_id"),
    "notes": ("run_id", "case_id", "event_id", "kind"),
    "alert_deliveries": ("delivery_id", "attempt", "result"),
    "alert_lifecycle": ("alert_id", "version"),
    "event_chain": ("case_id", "position", "hash"),
}
"""Each base table's identity (its ORDER BY): the key a retried write collapses on."""
