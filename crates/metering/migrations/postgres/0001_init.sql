-- Switchyard's state on PostgreSQL, for several gateway replicas sharing one database: the same
-- tables, columns and constraints as the SQLite migrations 0001-0011 (read those for why each
-- exists), in one step, since no Postgres database predates them.
--
-- Conventions, as on SQLite:
-- * Money is BIGINT nano-dollars (1 USD = 1e9); never a float or NUMERIC.
-- * Times are BIGINT unix milliseconds unless the column says otherwise.
-- * JSON documents are TEXT, written and read by the store as on SQLite (the store never
--   queries inside them).

CREATE TABLE tenants (
    id                TEXT    NOT NULL PRIMARY KEY,
    tier              TEXT    NOT NULL,
    overrides         TEXT    NOT NULL DEFAULT '{}',
    prepaid           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        BIGINT  NOT NULL,
    content_log_days  BIGINT  NOT NULL DEFAULT 0 CHECK (content_log_days IN (0, 7, 30))
);

CREATE TABLE credits (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    amount_nanos  BIGINT  NOT NULL,
    note          TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL
);

CREATE INDEX credits_tenant ON credits (tenant_id);

CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    prefix      TEXT    NOT NULL,
    hash        BYTEA   NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    scopes      TEXT    NOT NULL DEFAULT '{}',
    limits      TEXT    NOT NULL DEFAULT '{}',
    expires_at  BIGINT,
    revoked_at  BIGINT,
    created_at  BIGINT  NOT NULL
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- One row per request that reached a worker; the primary key keeps a retried batch, or the
-- same request written by two replicas, to one row.
CREATE TABLE usage (
    request_id         TEXT    NOT NULL PRIMARY KEY,
    started_at_ms      BIGINT  NOT NULL,
    tenant_id          TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    stream             BOOLEAN NOT NULL,
    worker             TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    region             TEXT    NOT NULL,
    prompt_tokens      BIGINT  NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  BIGINT  NOT NULL CHECK (completion_tokens >= 0),
    usage_estimated    BOOLEAN NOT NULL,
    usage_source       TEXT    NOT NULL DEFAULT 'worker',
    usage_note         TEXT,
    ttft_ms            BIGINT  CHECK (ttft_ms >= 0),
    ttft_exempt        BOOLEAN NOT NULL DEFAULT FALSE,
    total_ms           BIGINT  NOT NULL CHECK (total_ms >= 0),
    status             TEXT    NOT NULL,
    http_status        BIGINT  NOT NULL,
    finish_reason      TEXT,
    cost_nanos         BIGINT  NOT NULL,
    cogs_nanos         BIGINT  NOT NULL
);

CREATE INDEX usage_tenant_time ON usage (tenant_id, started_at_ms);
CREATE INDEX usage_time ON usage (started_at_ms);

CREATE TABLE sli_minutes (
    minute      BIGINT NOT NULL,
    tenant_id   TEXT   NOT NULL,
    tier        TEXT   NOT NULL,
    model       TEXT   NOT NULL,
    region      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    requests    BIGINT NOT NULL CHECK (requests >= 0),
    ok          BIGINT NOT NULL CHECK (ok >= 0),
    errors_5xx  BIGINT NOT NULL CHECK (errors_5xx >= 0),
    errors_429  BIGINT NOT NULL CHECK (errors_429 >= 0),
    ttft_slow   BIGINT NOT NULL CHECK (ttft_slow >= 0),
    bad         BIGINT NOT NULL DEFAULT 0 CHECK (bad >= 0),
    throttled   BIGINT NOT NULL DEFAULT 0 CHECK (throttled >= 0),
    PRIMARY KEY (minute, tenant_id, tier, model, region, provider)
);

CREATE INDEX sli_minutes_tenant ON sli_minutes (tenant_id, minute);

CREATE TABLE sli_latency (
    minute      BIGINT NOT NULL,
    tenant_id   TEXT   NOT NULL,
    tier        TEXT   NOT NULL,
    model       TEXT   NOT NULL,
    region      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    metric      TEXT   NOT NULL,
    le_ms       BIGINT NOT NULL,
    count       BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (minute, tenant_id, tier, model, region, provider, metric, le_ms)
);

CREATE INDEX sli_latency_tenant ON sli_latency (tenant_id, minute);

CREATE TABLE sli_refusals (
    request_id   TEXT    NOT NULL PRIMARY KEY,
    at_ms        BIGINT  NOT NULL,
    tenant_id    TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    http_status  BIGINT  NOT NULL,
    throttled    BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX sli_refusals_tenant_time ON sli_refusals (tenant_id, at_ms);
CREATE INDEX sli_refusals_time ON sli_refusals (at_ms);

CREATE TABLE maintenance (
    id               BIGSERIAL PRIMARY KEY,
    start_ms         BIGINT NOT NULL,
    end_ms           BIGINT NOT NULL CHECK (end_ms > start_ms),
    scope            TEXT   NOT NULL,
    note             TEXT   NOT NULL DEFAULT '',
    announced_at_ms  BIGINT NOT NULL,
    created_at_ms    BIGINT NOT NULL
);

CREATE INDEX maintenance_time ON maintenance (start_ms);

CREATE TABLE incidents (
    id                BIGSERIAL PRIMARY KEY,
    started_at_ms     BIGINT NOT NULL,
    detected_at_ms    BIGINT NOT NULL CHECK (detected_at_ms >= started_at_ms),
    ended_at_ms       BIGINT CHECK (ended_at_ms IS NULL OR ended_at_ms >= started_at_ms),
    scopes            TEXT   NOT NULL DEFAULT '[]',
    severity          TEXT   NOT NULL,
    title             TEXT   NOT NULL,
    slo_bp            BIGINT NOT NULL CHECK (slo_bp BETWEEN 0 AND 10000),
    requests          BIGINT CHECK (requests >= 0),
    requests_failed   BIGINT CHECK (requests_failed >= 0),
    bad_minutes       BIGINT CHECK (bad_minutes >= 0),
    budget_spent_bp   BIGINT CHECK (budget_spent_bp >= 0),
    tenants_affected  BIGINT CHECK (tenants_affected >= 0)
);

CREATE INDEX incidents_started ON incidents (started_at_ms);

-- At most one open incident, whichever replica's evaluator sees the alert first.
CREATE UNIQUE INDEX incidents_one_open ON incidents ((ended_at_ms IS NULL)) WHERE ended_at_ms IS NULL;

CREATE TABLE incident_alerts (
    incident_id     BIGINT NOT NULL REFERENCES incidents (id),
    name            TEXT   NOT NULL,
    scope           TEXT   NOT NULL,
    severity        TEXT   NOT NULL,
    summary         TEXT   NOT NULL,
    fired_at_ms     BIGINT NOT NULL,
    resolved_at_ms  BIGINT,
    PRIMARY KEY (incident_id, name, scope, fired_at_ms)
);

CREATE TABLE content_logs (
    request_id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    model                 TEXT    NOT NULL,
    endpoint              TEXT    NOT NULL,
    stream                BOOLEAN NOT NULL,
    status                TEXT    NOT NULL,
    created_at_ms         BIGINT  NOT NULL,
    expires_at_ms         BIGINT  NOT NULL,
    prompt                TEXT    NOT NULL,
    prompt_truncated      BOOLEAN NOT NULL,
    completion            TEXT    NOT NULL,
    completion_truncated  BOOLEAN NOT NULL
);

CREATE INDEX content_logs_expiry ON content_logs (expires_at_ms);
CREATE INDEX content_logs_tenant_time ON content_logs (tenant_id, created_at_ms);

CREATE TABLE ledger_dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    request_id  TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    record      TEXT   NOT NULL,
    error       TEXT   NOT NULL,
    at_ms       BIGINT NOT NULL
);

CREATE INDEX ledger_dead_letters_request ON ledger_dead_letters (request_id);

CREATE TABLE gateway_heartbeats (
    minute    BIGINT NOT NULL,
    instance  TEXT   NOT NULL,
    PRIMARY KEY (minute, instance)
);

CREATE TABLE usage_open (
    request_id          TEXT    NOT NULL PRIMARY KEY,
    instance            TEXT    NOT NULL,
    started_at_ms       BIGINT  NOT NULL,
    tenant_id           TEXT    NOT NULL,
    key_id              TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    endpoint            TEXT    NOT NULL,
    stream              BOOLEAN NOT NULL,
    prompt_estimate     BIGINT  NOT NULL CHECK (prompt_estimate >= 0),
    price_in_nanos      BIGINT  NOT NULL CHECK (price_in_nanos >= 0),
    price_out_nanos     BIGINT  NOT NULL CHECK (price_out_nanos >= 0),
    worker              TEXT,
    provider            TEXT,
    region              TEXT,
    worker_price_nanos  BIGINT  NOT NULL DEFAULT 0,
    worker_slots        BIGINT  NOT NULL DEFAULT 1,
    relayed_tokens      BIGINT  NOT NULL DEFAULT 0 CHECK (relayed_tokens >= 0),
    ttft_ms             BIGINT,
    checkpoint_at_ms    BIGINT
);

CREATE INDEX usage_open_instance ON usage_open (instance);

CREATE TABLE gateway_instances (
    instance        TEXT   NOT NULL PRIMARY KEY,
    started_at_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,
    lease_ms        BIGINT NOT NULL DEFAULT 45000 CHECK (lease_ms > 0)
);

CREATE TABLE probe_minutes (
    minute   BIGINT NOT NULL,
    prober   TEXT   NOT NULL,
    region   TEXT   NOT NULL,
    probes   BIGINT NOT NULL CHECK (probes >= 0),
    failed   BIGINT NOT NULL CHECK (failed >= 0 AND failed <= probes),
    PRIMARY KEY (minute, prober)
);
