-- esupervision warehouse, migration 0002: aggregates kept by materialized views for the dashboards.
--
-- A materialized view sees every inserted block, including a retried batch or a replayed stream,
-- before ReplacingMergeTree collapses anything. So every aggregate here is a set, not a sum:
-- uniqExact states of ids (cases, findings, deliveries, raw lines) and max, which give the same
-- answer however often a row arrives. Read them with uniqExactMerge / maxMerge over any range of
-- days; a case counted on two days of a range is counted once for the range.
-- Dimension columns are '' when unknown (aggregate keys cannot be Nullable).

-- Case flow per China day, department, window, region and item kind. One row of case_facts can
-- contribute to several metrics (received, accepted, completed, ...), each on the day of its own
-- timestamp; a later version of the same case repeats the same case id on the same day.
--   received               coalesce(submitted_at, accepted_at)
--   accepted               accepted_at
--   completed              completed_at
--   completed_on_time      completed_at where on_time = 1
--   completed_late         completed_at where on_time = 0
--   on_the_spot_completed  completed_at of an on_the_spot (即办件) item
--   on_the_spot_same_day   the same, completed on time (that is, the same day)
--   decided                decided_at
--   delivered              delivered_at
CREATE TABLE IF NOT EXISTS daily_case_metrics {{ON_CLUSTER}}
(
    day          Date,
    department   {{LC}},
    window       {{LC}},
    region_code  {{LC}},
    item_kind    {{LC}},
    metric       {{LC}},
    cases        AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, department, window, region_code, item_kind, metric);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_case_metrics_mv {{ON_CLUSTER}} TO daily_case_metrics AS
SELECT
    toDate(assumeNotNull(m.2)) AS day,
    ifNull(department, '') AS department,
    ifNull(window, '') AS window,
    ifNull(region_code, '') AS region_code,
    ifNull(item_kind, '') AS item_kind,
    m.1 AS metric,
    uniqExactState(case_id) AS cases
FROM case_facts
ARRAY JOIN arrayFilter(x -> isNotNull(x.2), [
    ('received', coalesce(submitted_at, accepted_at)),
    ('accepted', accepted_at),
    ('completed', completed_at),
    ('completed_on_time', if(on_time = 1, completed_at, NULL)),
    ('completed_late', if(on_time = 0, completed_at, NULL)),
    ('on_the_spot_completed', if(item_kind = 'on_the_spot', completed_at, NULL)),
    ('on_the_spot_same_day', if(item_kind = 'on_the_spot' AND on_time = 1, completed_at, NULL)),
    ('decided', decided_at),
    ('delivered', delivered_at)
]) AS m
GROUP BY day, department, window, region_code, item_kind, metric;

-- Findings per run, China day (of fired_at), department, window, region, category, rule, severity.
CREATE TABLE IF NOT EXISTS daily_findings {{ON_CLUSTER}}
(
    run_id       {{LC}},
    day          Date,
    department   {{LC}},
    window       {{LC}},
    region_code  {{LC}},
    category     {{LC}},
    rule         {{LC}},
    severity     {{LC}},
    findings     AggregateFunction(uniqExact, String),
    cases        AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (run_id, day, department, window, region_code, category, rule, severity);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_findings_mv {{ON_CLUSTER}} TO daily_findings AS
SELECT
    run_id,
    toDate(fired_at) AS day,
    ifNull(department, '') AS department,
    ifNull(window, '') AS window,
    ifNull(region_code, '') AS region_code,
    category,
    rule,
    severity,
    uniqExactState(finding_id) AS findings,
    uniqExactState(case_id) AS cases
FROM findings
GROUP BY run_id, day, department, window, region_code, category, rule, severity;

-- Alert deliveries per China day, channel, kind and result: distinct deliveries and attempts.
CREATE TABLE IF NOT EXISTS daily_deliveries {{ON_CLUSTER}}
(
    day          Date,
    channel      {{LC}},
    kind         {{LC}},
    result       {{LC}},
    digest       UInt8,
    deliveries   AggregateFunction(uniqExact, String),
    attempts     AggregateFunction(uniqExact, String, UInt16)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, channel, kind, result, digest);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_deliveries_mv {{ON_CLUSTER}} TO daily_deliveries AS
SELECT
    toDate(attempted_at) AS day,
    channel,
    kind,
    result,
    digest,
    uniqExactState(delivery_id) AS deliveries,
    uniqExactState(delivery_id, attempt) AS attempts
FROM alert_deliveries
GROUP BY day, channel, kind, result, digest;
