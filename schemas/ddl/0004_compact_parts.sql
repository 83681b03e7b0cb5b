-- esupervision warehouse, migration 0004: batches written as compact parts.
--
-- A MergeTree part in the wide format keeps two files or more per column (a Nullable or LowCardinality
-- column four): 61 files for a part of `events`, 148 for one of `case_facts`. A sink batch of 100,000
-- lines is 40-50 MB before compression, over the 10 MB under which ClickHouse writes a compact part (all
-- columns in one file), so every batch made ~200 files and the merges that followed as many again. On
-- the ext4 of the benchmark machine, creating those inodes took about a tenth of the storage's CPU
-- (perf: ext4 inode allocation in the insert and merge threads). Parts stay compact up to 128 MiB of
-- uncompressed data here — batches and their first merges; larger merged parts are wide, as before.
-- Only new parts are affected; 20.3 introduced the setting, older servers skip this migration.
{{IF_PART_SETTINGS}} ALTER TABLE events {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728;
{{IF_PART_SETTINGS}} ALTER TABLE case_facts {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728;
{{IF_PART_SETTINGS}} ALTER TABLE findings {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728;
{{IF_PART_SETTINGS}} ALTER TABLE notes {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728;
{{IF_PART_SETTINGS}} ALTER TABLE event_chain {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728;
{{IF_PART_SETTINGS}} ALTER TABLE daily_case_metrics {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728;
{{IF_PART_SETTINGS}} ALTER TABLE daily_findings {{ON_CLUSTER}} MODIFY SETTING min_bytes_for_wide_part = 134217728
