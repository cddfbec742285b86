-- What black-box probers (`switchyard probe`, run away from the gateway's host) saw of the
-- public endpoint, per minute and prober: probes sent and failed (a 5xx, no answer, a broken
-- stream, or a first/last token over its limit). The SLA report takes, for each minute, the
-- worse of this and the gateway's own view. A prober pushes a minute's counts as they grow;
-- the latest push replaces the earlier one.
CREATE TABLE probe_minutes (
    minute   INTEGER NOT NULL,
    prober   TEXT    NOT NULL,
    region   TEXT    NOT NULL,
    probes   INTEGER NOT NULL CHECK (probes >= 0),
    failed   INTEGER NOT NULL CHECK (failed >= 0 AND failed <= probes),
    PRIMARY KEY (minute, prober)
) STRICT, WITHOUT ROWID;
