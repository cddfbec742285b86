-- Where each usage row's token counts came from: workers run on strangers' machines, so their
-- reports are billed only within bounds, and a row says whether it was billed by the worker's
-- report, the worker's tokenizer, or the gateway's own count (and, when the worker's report was
-- refused, what the worker claimed). No CHECK on the values: SQLite cannot change a column's
-- constraint without rebuilding the table; the store validates them on read.
ALTER TABLE usage ADD COLUMN usage_source TEXT NOT NULL DEFAULT 'worker';
ALTER TABLE usage ADD COLUMN usage_note TEXT;
UPDATE usage SET usage_source = 'gateway' WHERE usage_estimated = 1;

-- Records the store refused to write (a value it cannot hold): kept whole, with the reason, so
-- that one bad row never blocks the batch it came in or any later one, and nothing is lost.
CREATE TABLE ledger_dead_letters (
    id          INTEGER NOT NULL PRIMARY KEY,
    request_id  TEXT    NOT NULL,
    -- usage | refusal
    kind        TEXT    NOT NULL,
    -- the record as JSON
    record      TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL
) STRICT;
