-- esupervision: ClickHouse users with SQL access control (ClickHouse 20.5 and later, access_management on).
-- For 18.16 and other servers whose users live in XML, use users.d/esup-users.xml beside this file.
-- NOT a migration: `esup db migrate` applies schemas/ddl only. A DBA runs this once per server, e.g.
--   clickhouse-client --multiquery --param_grafana_sha256="$(printf '%s' "$GRAFANA_CH_PASSWORD" | sha256sum | cut -d' ' -f1)" ... < readonly_user.sql
-- after replacing the two REPLACE_WITH_... values with SHA-256 hex digests of the passwords (from the
-- secrets store, never committed). The database is `esup` (the name in CLICKHOUSE_URL).

-- Dashboards (Grafana's ClickHouse data source): read only. readonly = 1 refuses every write, ALTER,
-- CREATE, DROP and SET; the plugin sets max_execution_time on each query, so that one setting stays
-- changeable (CHANGEABLE_IN_READONLY), within bounds.
CREATE SETTINGS PROFILE IF NOT EXISTS esup_readonly
    SETTINGS readonly = 1, max_execution_time = 60 MIN 1 MAX 300 CHANGEABLE_IN_READONLY, max_memory_usage = 4000000000;

CREATE USER IF NOT EXISTS grafana
    IDENTIFIED WITH sha256_hash BY 'REPLACE_WITH_SHA256_OF_THE_GRAFANA_PASSWORD'
    SETTINGS PROFILE 'esup_readonly';

GRANT SELECT ON esup.* TO grafana;

-- The pipeline (esup worker, run, replay, alerts, db migrate): writes and evolves the esup database only.
CREATE USER IF NOT EXISTS esup_writer
    IDENTIFIED WITH sha256_hash BY 'REPLACE_WITH_SHA256_OF_THE_WRITER_PASSWORD';

GRANT CREATE DATABASE ON esup.*, CREATE TABLE, CREATE VIEW, DROP VIEW, SELECT, INSERT, ALTER UPDATE, ALTER DELETE,
      OPTIMIZE ON esup.* TO esup_writer;
