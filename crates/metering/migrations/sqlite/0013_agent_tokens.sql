-- Agent tokens: per-agent credentials for the registration API, scoped to the providers,
-- models, regions and maximum price they may register workers for (`scope`, JSON). The secret
-- is held as its SHA-256 digest only. A revoked token stays (with the time it was revoked) so
-- that the fleet and the logs can still name who registered what.
CREATE TABLE agent_tokens (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    hash           BLOB    NOT NULL UNIQUE,
    prefix         TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    revoked_at_ms  INTEGER
) STRICT;
