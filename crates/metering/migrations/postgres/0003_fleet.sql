-- The fleet's shared state, as SQLite's migration 0012 (read it for why each column exists):
-- workers registered through any replica, with leases on the database's clock, and the drains
-- operators and agents asked for. Each replica keeps its registry in memory and reconciles it
-- from these tables; health checks stay per replica and are not stored.

CREATE SEQUENCE fleet_sequence;

CREATE TABLE fleet_registrations (
    name           TEXT    NOT NULL PRIMARY KEY,
    spec           TEXT    NOT NULL,
    generation     BIGINT  NOT NULL,
    expires_at_ms  BIGINT  NOT NULL
);

CREATE TABLE fleet_drains (
    kind      TEXT    NOT NULL CHECK (kind IN ('worker', 'provider', 'region')),
    value     TEXT    NOT NULL,
    draining  BOOLEAN NOT NULL,
    reason    TEXT    NOT NULL,
    seq       BIGINT  NOT NULL,
    PRIMARY KEY (kind, value)
);

-- Every change a replica must act on notifies `switchyard_fleet`, which every replica listens
-- on (`FleetStore::fleet_changes`) and reconciles from: a registration added, replaced (a new
-- generation) or removed, and any drain. A lease renewal (a heartbeat: the bulk of the writes)
-- notifies nobody; a replica whose own copy of a lease runs out asks the store before it
-- drops the worker. Row-level, so an upsert that only renewed stays silent; Postgres folds
-- identical notifications within one transaction into one. The payload names the schema and
-- table: channels are database-wide, and schemas (tests, several deployments) share them.
CREATE FUNCTION switchyard_fleet_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_fleet', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER fleet_registrations_added AFTER INSERT OR DELETE ON fleet_registrations
    FOR EACH ROW EXECUTE FUNCTION switchyard_fleet_changed();
CREATE TRIGGER fleet_registrations_replaced AFTER UPDATE ON fleet_registrations
    FOR EACH ROW WHEN (OLD.generation IS DISTINCT FROM NEW.generation)
    EXECUTE FUNCTION switchyard_fleet_changed();
CREATE TRIGGER fleet_drains_changed AFTER INSERT OR UPDATE OR DELETE ON fleet_drains
    FOR EACH ROW EXECUTE FUNCTION switchyard_fleet_changed();
