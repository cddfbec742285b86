-- The fleet's shared state: workers registered by `switchyard agent` (through any gateway on
-- this store) and the drains operators and agents asked for. Every gateway keeps its own
-- registry in memory (the request path reads that) and reconciles it from these tables; each
-- health-checks the workers on its own, so nothing about a worker's health is stored here.

-- A registration and its lease. `spec` is the worker as registered (JSON, written and read by
-- the control plane; the store only compares it). `generation` comes from `fleet_sequence`:
-- a new registration takes the next number, a renewal (same spec, lease still live) keeps
-- its own, so drains recorded before a worker registered anew do not apply to it.
-- `expires_at_ms` is on the database's clock: every gateway on the store judges a lease by
-- the same clock, whatever its own says.
CREATE TABLE fleet_registrations (
    name           TEXT    NOT NULL PRIMARY KEY,
    spec           TEXT    NOT NULL,
    generation     INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
) STRICT;

-- The latest drain or undrain of each target (one worker, a provider or a region). A worker is
-- draining when the newest record matching it, newer than its registration, says so; static
-- workers (from the config file) have generation 0, so every record applies to them.
CREATE TABLE fleet_drains (
    kind      TEXT    NOT NULL CHECK (kind IN ('worker', 'provider', 'region')),
    value     TEXT    NOT NULL,
    draining  INTEGER NOT NULL CHECK (draining IN (0, 1)),
    reason    TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) STRICT;

-- One counter orders registrations and drains (Postgres has a SEQUENCE for this).
CREATE TABLE fleet_sequence (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last  INTEGER NOT NULL
) STRICT;
INSERT INTO fleet_sequence (id, last) VALUES (1, 0);
