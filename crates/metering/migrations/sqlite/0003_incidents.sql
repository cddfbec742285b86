-- Incidents opened by the gateway's alerts (error budget burning fast, failing synthetic
-- probes, a model with no worker in rotation), the alerts that made them up, and an index the
-- alert evaluator needs to read the latest refusals by time.
--
-- One incident covers every alert that fires while it is open (one outage is one incident,
-- however many scopes it shows in); it closes when the last of its alerts resolves, and its
-- impact columns are filled in then. They stay NULL while it is open.

CREATE TABLE incidents (
    id                INTEGER NOT NULL PRIMARY KEY,
    -- When the trouble began as far as the first alert can tell.
    started_at_ms     INTEGER NOT NULL,
    -- When the first alert fired.
    detected_at_ms    INTEGER NOT NULL CHECK (detected_at_ms >= started_at_ms),
    ended_at_ms       INTEGER CHECK (ended_at_ms IS NULL OR ended_at_ms >= started_at_ms),
    -- JSON array of scopes: "all", "tier:<t>", "model:<m>", "worker:<w>", "region:<r>".
    scopes            TEXT    NOT NULL DEFAULT '[]',
    -- 'page' | 'ticket': the highest among its alerts.
    severity          TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    -- The SLO (basis points) its budget figures are against.
    slo_bp            INTEGER NOT NULL CHECK (slo_bp BETWEEN 0 AND 10000),
    requests          INTEGER CHECK (requests >= 0),
    requests_failed   INTEGER CHECK (requests_failed >= 0),
    bad_minutes       INTEGER CHECK (bad_minutes >= 0),
    -- Share of the month's error budget spent, in basis points of the budget.
    budget_spent_bp   INTEGER CHECK (budget_spent_bp >= 0),
    tenants_affected  INTEGER CHECK (tenants_affected >= 0)
) STRICT;

CREATE INDEX incidents_started ON incidents (started_at_ms);

-- At most one open incident: the evaluator attaches new alerts to it.
CREATE UNIQUE INDEX incidents_one_open ON incidents ((ended_at_ms IS NULL)) WHERE ended_at_ms IS NULL;

CREATE TABLE incident_alerts (
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    -- 'slo_burn_rate' | 'probe_failed' | 'model_unavailable'
    name            TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    fired_at_ms     INTEGER NOT NULL,
    resolved_at_ms  INTEGER,
    PRIMARY KEY (incident_id, name, scope, fired_at_ms)
) STRICT;

-- The evaluator reads the last few minutes of refusals (requests the gateway answered itself)
-- across all tenants; 0002's index leads with the tenant.
CREATE INDEX sli_refusals_time ON sli_refusals (at_ms);
