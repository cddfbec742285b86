-- Agent tokens, as SQLite's migration 0013 (read it for why each column exists).
CREATE TABLE agent_tokens (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    hash           BYTEA   NOT NULL UNIQUE,
    prefix         TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    created_at_ms  BIGINT  NOT NULL,
    revoked_at_ms  BIGINT
);
