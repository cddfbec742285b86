-- Every gateway replica keeps an in-memory view of tenants and keys (the request path reads it
-- without touching the database). A change made through any replica, or by hand, must reach
-- the others within a second: each change to these tables notifies the channel
-- `switchyard_directory`, which every replica listens on and reloads its view from.
-- Statement-level: one notification per statement, however many rows it touched; Postgres
-- also folds identical notifications within one transaction into one.

CREATE FUNCTION switchyard_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_directory', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_directory_changed();
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_directory_changed();
CREATE TRIGGER credits_changed AFTER INSERT OR UPDATE OR DELETE ON credits
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_directory_changed();
