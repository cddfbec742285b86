-- Crash accounting. A request is written here when it is admitted (by the ledger's batch
-- writer, like its usage row), updated with checkpoints of what was relayed while it runs, and
-- deleted in the transaction that writes its usage row. A row still here when the gateway
-- process that opened it is dead (no sign of life in `gateway_instances` for a lease) was in
-- flight at a crash: it is turned into a usage row marked `interrupted`, billed for what the
-- gateway knew at its last checkpoint.
CREATE TABLE usage_open (
    request_id          TEXT    NOT NULL PRIMARY KEY,
    instance            TEXT    NOT NULL,
    started_at_ms       INTEGER NOT NULL,
    tenant_id           TEXT    NOT NULL,
    key_id              TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    endpoint            TEXT    NOT NULL,
    stream              INTEGER NOT NULL CHECK (stream IN (0, 1)),
    prompt_estimate     INTEGER NOT NULL CHECK (prompt_estimate >= 0),
    price_in_nanos      INTEGER NOT NULL CHECK (price_in_nanos >= 0),
    price_out_nanos     INTEGER NOT NULL CHECK (price_out_nanos >= 0),
    -- Set by checkpoints once a worker is serving it.
    worker              TEXT,
    provider            TEXT,
    region              TEXT,
    worker_price_nanos  INTEGER NOT NULL DEFAULT 0,
    worker_slots        INTEGER NOT NULL DEFAULT 1,
    relayed_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (relayed_tokens >= 0),
    ttft_ms             INTEGER,
    checkpoint_at_ms    INTEGER
) STRICT;

CREATE INDEX usage_open_instance ON usage_open (instance);

-- Each gateway process's sign of life, renewed with its heartbeats.
CREATE TABLE gateway_instances (
    instance        TEXT    NOT NULL PRIMARY KEY,
    started_at_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL
) STRICT;
