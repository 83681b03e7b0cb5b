-- esupervision warehouse, migration 0001: the base tables.
--
-- Placeholders are filled per backend by warehouse/sql.py (see schemas/README-warehouse.md):
--   {{DT}}   DateTime64(3, 'Asia/Shanghai') on chDB / ClickHouse >= 20.1, DateTime('Asia/Shanghai') on 18.16
--   {{LC}}   LowCardinality(String), or String where LowCardinality is experimental (18.16)
--   {{LCN}}  LowCardinality(Nullable(String)), or Nullable(String)
--   {{ZSTD}} CODEC(ZSTD(1)) where codecs exist, else nothing (level 1: as small as 3 on JSON lines, cheaper)
--   {{ON_CLUSTER}} and the engine are rewritten for a replicated cluster when one is configured.
-- Every statement is idempotent (IF NOT EXISTS), so a migration interrupted half way can be re-run.
--
-- Idempotent writes: every table is a ReplacingMergeTree whose ORDER BY key is the row's identity
-- (deterministic ids), so a retried batch or a replayed stream collapses to one row per identity.
-- A ReplacingMergeTree only collapses rows inside one partition, so every partition key below is
-- computed from the same immutable fields as the identity (never from the time a row was written).

-- Raw events exactly as received, valid or not. `raw` is the line as it arrived (bytes, not
-- re-encoded); `valid = 0` rows carry the validation error. Identity: the line's content
-- (case, event time, event id and a hash of the raw bytes): a re-delivered line is one row, a
-- line re-sent with different content is kept beside the first (the engine notes it).
-- Invalid lines whose event time cannot be read are filed under 1970-01-01 (partition 197001).
CREATE TABLE IF NOT EXISTS events {{ON_CLUSTER}}
(
    case_id      String,
    occurred_at  {{DT}},
    event_id     String,
    raw_hash     UInt64 MATERIALIZED cityHash64(raw),
    event_type   {{LC}},
    source       {{LC}},
    recorded_at  Nullable({{DT}}),
    received_at  {{DT}},
    officer_id   String,
    level        UInt8,
    valid        UInt8,
    error        String,
    position     UInt64,
    raw          String {{ZSTD}}
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (case_id, occurred_at, event_id, raw_hash);

-- Case facts: one row per case version (rules/facts.py); the highest version is the current state.
-- The only personal data in the warehouse's derived tables lives here (applicant_*).
-- No time partition: a ReplacingMergeTree replaces only within a partition and no date of a case is
-- fixed from its first version on (submission may arrive after acceptance), so all versions of a
-- case must share one partition; reads use FINAL, which is exact with a single partition.
CREATE TABLE IF NOT EXISTS case_facts {{ON_CLUSTER}}
(
    case_id              String,
    version              UInt32,
    status               {{LC}},
    item_code            Nullable(String),
    item_name            Nullable(String),
    item_kind            {{LCN}},
    department           {{LCN}},
    window               {{LCN}},
    region_code          {{LCN}},
    catalog_version      {{LCN}},
    applicant_name       Nullable(String),
    applicant_id_number  Nullable(String),
    applicant_phone      Nullable(String),
    officers             Array(String),
    submitted_at         Nullable({{DT}}),
    accepted_at          Nullable({{DT}}),
    clock_start_at       Nullable({{DT}}),
    promised_due_at      Nullable({{DT}}),
    statutory_due_at     Nullable({{DT}}),
    decided_at           Nullable({{DT}}),
    outcome              {{LCN}},
    completed_at         Nullable({{DT}}),
    delivered_at         Nullable({{DT}}),
    paused_working_days  UInt32,
    supplement_count     UInt32,
    extension_days       UInt32,
    fee_assessed         Decimal(18, 4),
    fee_paid             Decimal(18, 4),
    fee_waived           Decimal(18, 4),
    fee_refunded         Decimal(18, 4),
    rating_level         Nullable(UInt8),
    complaint_count      UInt32,
    on_time              Nullable(UInt8),
    last_event_at        {{DT}}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY case_id;

-- Findings (rules/findings.py), per run: 'live' for live and embedded runs, another run id for each
-- audit replay, so the two never mix. Identity: (run_id, finding_id); case_id is a function of the
-- finding id and sits in the key so a case's findings are one range. Free text is scrubbed of
-- personal data before it is written (warehouse/rows.py). A replay run is dropped by partition.
CREATE TABLE IF NOT EXISTS findings {{ON_CLUSTER}}
(
    run_id           {{LC}},
    case_id          String,
    finding_id       String,
    rule             {{LC}},
    category         {{LC}},
    severity         {{LC}},
    item_code        Nullable(String),
    department       {{LCN}},
    window           {{LCN}},
    region_code      {{LCN}},
    officer_id       Nullable(String),
    fired_at         {{DT}},
    deadline         Nullable({{DT}}),
    event_id         Nullable(String),
    message          String,
    basis            String,
    catalog_version  {{LCN}},
    occurrence       String
)
ENGINE = ReplacingMergeTree
PARTITION BY (run_id, toYYYYMM(fired_at))
ORDER BY (run_id, case_id, finding_id);

-- Engine notes (rules/findings.py Note): events the engine could not use, and why.
-- A note carries no time of its own, so it is partitioned by run only.
CREATE TABLE IF NOT EXISTS notes {{ON_CLUSTER}}
(
    run_id    {{LC}},
    case_id   String,
    event_id  String,
    kind      {{LC}},
    message   String
)
ENGINE = ReplacingMergeTree
PARTITION BY run_id
ORDER BY (run_id, case_id, event_id, kind);

-- Alert delivery attempts: every try is a row. Identity: (delivery_id, attempt, result), so the
-- 'pending' record written before a send and the outcome after it are both kept.
-- result: ok | retry | failed (the alerting module may also write pending/deferred/cancelled).
-- `detail` is free JSON for the alerting module's own fields; it must not hold personal data.
CREATE TABLE IF NOT EXISTS alert_deliveries {{ON_CLUSTER}}
(
    delivery_id   String,
    attempt       UInt16,
    result        {{LC}},
    alert_id      String,
    finding_ids   Array(String),
    recipient     String,
    channel       {{LC}},
    kind          {{LC}},
    attempted_at  {{DT}},
    error         String,
    digest        UInt8,
    detail        String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (delivery_id, attempt, result);

-- Alert lifecycle: one row per version of an alert (1 = opened, +1 per change).
-- status: open | acknowledged | resolved | dismissed; actor = by whom; changed_at = when.
CREATE TABLE IF NOT EXISTS alert_lifecycle {{ON_CLUSTER}}
(
    alert_id     String,
    version      UInt32,
    status       {{LC}},
    severity     {{LC}},
    changed_at   {{DT}},
    actor        String,
    reason       String,
    finding_ids  Array(String),
    detail       String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(changed_at)
ORDER BY (alert_id, version);
