-- Opt-in content logging: prompts and completions of tenants who asked for it, redacted by the
-- gateway before they are queued here, and deleted by the gateway once `expires_at_ms` passes.

-- Days a tenant's content is kept; 0 = not logged (the default). A column rather than a key in
-- `overrides`: overrides are tier limits (and the same JSON is reused for per-key limits),
-- while this is a data-handling choice of the tenant, like `prepaid`.
ALTER TABLE tenants ADD COLUMN content_log_days INTEGER NOT NULL DEFAULT 0
    CHECK (content_log_days IN (0, 7, 30));

-- One row per logged request. No foreign key to tenants, as for `usage`: one row naming a
-- since-renamed tenant must not fail the batch.
CREATE TABLE content_logs (
    request_id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    model                 TEXT    NOT NULL,
    endpoint              TEXT    NOT NULL,
    stream                INTEGER NOT NULL CHECK (stream IN (0, 1)),
    -- completed | failed | failed_mid_stream | client_disconnected
    status                TEXT    NOT NULL,
    created_at_ms         INTEGER NOT NULL,
    expires_at_ms         INTEGER NOT NULL,
    prompt                TEXT    NOT NULL,
    prompt_truncated      INTEGER NOT NULL CHECK (prompt_truncated IN (0, 1)),
    completion            TEXT    NOT NULL,
    completion_truncated  INTEGER NOT NULL CHECK (completion_truncated IN (0, 1))
) STRICT;

CREATE INDEX content_logs_expiry ON content_logs (expires_at_ms);
CREATE INDEX content_logs_tenant_time ON content_logs (tenant_id, created_at_ms);
