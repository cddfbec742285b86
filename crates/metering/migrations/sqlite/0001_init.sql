-- Switchyard's ledger on SQLite: tenants, prepaid credit, API keys (hashes only) and usage.
--
-- Conventions:
-- * Money is INTEGER nano-dollars (1 USD = 1e9); never REAL.
-- * Times are INTEGER unix milliseconds unless the column says otherwise.
-- * Booleans are INTEGER 0/1; JSON documents are TEXT.
-- * STRICT tables, so a value of the wrong type is an error instead of being stored as is.

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    tier        TEXT    NOT NULL,
    -- LimitOverrides as JSON; '{}' when nothing is overridden.
    overrides   TEXT    NOT NULL DEFAULT '{}',
    prepaid     INTEGER NOT NULL DEFAULT 0 CHECK (prepaid IN (0, 1)),
    created_at  INTEGER NOT NULL
) STRICT;

-- Top-ups (and corrections, which may be negative). The balance is SUM(credits) minus the
-- ledger's SUM(cost), so it cannot drift from what was billed.
CREATE TABLE credits (
    id            INTEGER NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    amount_nanos  INTEGER NOT NULL,
    note          TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX credits_tenant ON credits (tenant_id);

-- Never the secret: only its SHA-256.
CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    prefix      TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    -- Scopes as JSON.
    scopes      TEXT    NOT NULL DEFAULT '{}',
    -- LimitOverrides as JSON.
    limits      TEXT    NOT NULL DEFAULT '{}',
    expires_at  INTEGER,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- One row per request that reached a worker. `request_id` is the primary key, so a retried
-- batch is stored once (INSERT ... ON CONFLICT DO NOTHING).
--
-- No foreign key to tenants or keys on purpose: the ledger records what happened, and one
-- record naming a since-renamed tenant must not make the whole batch (everyone's billing) fail.
CREATE TABLE usage (
    request_id         TEXT    NOT NULL PRIMARY KEY,
    started_at_ms      INTEGER NOT NULL,
    tenant_id          TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    stream             INTEGER NOT NULL CHECK (stream IN (0, 1)),
    worker             TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    region             TEXT    NOT NULL,
    prompt_tokens      INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  INTEGER NOT NULL CHECK (completion_tokens >= 0),
    usage_estimated    INTEGER NOT NULL CHECK (usage_estimated IN (0, 1)),
    ttft_ms            INTEGER CHECK (ttft_ms >= 0),
    total_ms           INTEGER NOT NULL CHECK (total_ms >= 0),
    -- completed | failed | failed_mid_stream | client_disconnected
    status             TEXT    NOT NULL,
    http_status        INTEGER NOT NULL,
    finish_reason      TEXT,
    cost_nanos         INTEGER NOT NULL,
    cogs_nanos         INTEGER NOT NULL
) STRICT;

CREATE INDEX usage_tenant_time ON usage (tenant_id, started_at_ms);
CREATE INDEX usage_time ON usage (started_at_ms);
