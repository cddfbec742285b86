-- One row per minute in which a gateway process was alive, per process (`instance`). A minute
-- with no row was unobserved: no gateway was there to serve or to measure it, so the SLA report
-- counts it as bad (unless qualifying maintenance covers it) instead of as silently up.
-- Minutes before the first row ever written predate this record and are not judged.
CREATE TABLE gateway_heartbeats (
    minute    INTEGER NOT NULL,
    instance  TEXT    NOT NULL,
    PRIMARY KEY (minute, instance)
) STRICT, WITHOUT ROWID;
