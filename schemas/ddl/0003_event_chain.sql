-- esupervision warehouse, migration 0003: the hash chain over raw events (tamper evidence for audits).
--
-- One row per link of a case's chain, in the order the lines were stored (warehouse/chain.py):
--   hash_1 = SHA-256(GENESIS || raw_1), hash_i = SHA-256(hash_{i-1} || raw_i)   (hex, 64 characters)
-- raw_sha256 = SHA-256(raw) lets the writer recognise a line already chained (a retried batch adds
-- nothing) and lets `esup audit verify` tell an altered line from a removed one.
-- A table of its own rather than a column of `events`: 18.16 has no ADD COLUMN IF NOT EXISTS, and the
-- chain must not be rewritten when `events` is.
-- Identity: (case_id, position, hash). Two writers racing on one case (a partition handed over
-- mid-batch) would leave two links at one position: both are kept so verify can report the fork.
-- No time partition: all links of a case must collapse within one partition, and reads use FINAL.
CREATE TABLE IF NOT EXISTS event_chain {{ON_CLUSTER}}
(
    case_id     String,
    position    UInt32,
    event_id    String,
    raw_sha256  String,
    prev_hash   String,
    hash        String,
    chained_at  {{DT}}
)
ENGINE = ReplacingMergeTree
ORDER BY (case_id, position, hash);
