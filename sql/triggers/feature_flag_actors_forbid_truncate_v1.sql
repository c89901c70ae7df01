CREATE TRIGGER billing_sync_forbid_truncate
    BEFORE TRUNCATE ON billing_sync.feature_flag_actors
    FOR EACH STATEMENT
    EXECUTE FUNCTION billing_sync.forbid_truncate();
