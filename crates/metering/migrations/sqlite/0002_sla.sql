-- The SLA ledger: per-minute SLI rollups, the refusals that never reached a worker, and
-- declared maintenance windows.
--
-- Why rollups: a month of traffic is millions of usage rows; the SLA report needs, per tenant
-- and minute, only a handful of counts and latency histograms. They are updated in the same
-- transaction as the usage batch they come from, and only for rows that batch actually
-- inserted, so a retried batch neither loses nor doubles a minute.

-- One row per (minute, tenant, tier, model, region, provider). `minute` is unix minutes
-- (started_at_ms / 60000, UTC) of the request's arrival. Refusals before any worker have
-- region = '' and provider = ''. `tier` is the tenant's tier when the row was written.
CREATE TABLE sli_minutes (
    minute      INTEGER NOT NULL,
    tenant_id   TEXT    NOT NULL,
    tier        TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    requests    INTEGER NOT NULL CHECK (requests >= 0),
    -- Completed requests (the successful responses).
    ok          INTEGER NOT NULL CHECK (ok >= 0),
    -- HTTP 5xx, and streams that failed after their 200 (ours to count as errors too).
    errors_5xx  INTEGER NOT NULL CHECK (errors_5xx >= 0),
    errors_429  INTEGER NOT NULL CHECK (errors_429 >= 0),
    -- Requests whose first token came 5 s or more after arrival (the addendum's "< 5s TTFT").
    ttft_slow   INTEGER NOT NULL CHECK (ttft_slow >= 0),
    PRIMARY KEY (minute, tenant_id, tier, model, region, provider)
) STRICT, WITHOUT ROWID;

CREATE INDEX sli_minutes_tenant ON sli_minutes (tenant_id, minute);

-- Latency histograms per minute and key: `metric` is ttft | ttlt | ttlt_256, `le_ms` the
-- bucket's inclusive upper bound (a value v falls in the first bucket with v <= le_ms; the
-- overflow bucket's bound is 9223372036854775807). Bounds are stored as values, so they can
-- change without a migration.
CREATE TABLE sli_latency (
    minute      INTEGER NOT NULL,
    tenant_id   TEXT    NOT NULL,
    tier        TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    le_ms       INTEGER NOT NULL,
    count       INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (minute, tenant_id, tier, model, region, provider, metric, le_ms)
) STRICT, WITHOUT ROWID;

CREATE INDEX sli_latency_tenant ON sli_latency (tenant_id, minute);

-- Requests the gateway answered itself, before any worker: 503 no healthy worker, 429 from
-- our limiter, ... They have no usage row (nothing to bill) but count for the SLA.
-- `request_id` is the primary key so that a retried batch is counted once.
CREATE TABLE sli_refusals (
    request_id   TEXT    NOT NULL PRIMARY KEY,
    at_ms        INTEGER NOT NULL,
    tenant_id    TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    http_status  INTEGER NOT NULL
) STRICT;

CREATE INDEX sli_refusals_tenant_time ON sli_refusals (tenant_id, at_ms);

-- Declared maintenance. `scope` is 'all' or 'tenant:<id>'. `announced_at_ms` is when
-- customers were told (the addendum wants 48 h notice); `created_at_ms` when it was recorded.
CREATE TABLE maintenance (
    id               INTEGER NOT NULL PRIMARY KEY,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER NOT NULL CHECK (end_ms > start_ms),
    scope            TEXT    NOT NULL,
    note             TEXT    NOT NULL DEFAULT '',
    announced_at_ms  INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL
) STRICT;

CREATE INDEX maintenance_time ON maintenance (start_ms);
