-- Each gateway process states its own lease (three of its heartbeat intervals): replicas may be
-- configured with different intervals, and a process is judged dead by the lease it promised,
-- not by the judge's. Rows from before this column get the default lease (3 × 15 s).
ALTER TABLE gateway_instances ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 45000 CHECK (lease_ms > 0);

-- Reconciliation and the open-request guard look dead letters up by request id.
CREATE INDEX ledger_dead_letters_request ON ledger_dead_letters (request_id);
