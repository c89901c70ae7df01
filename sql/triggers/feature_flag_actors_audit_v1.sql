-- Adding or removing an actor is a flag change like any other: audited.
CREATE TRIGGER billing_sync_audit
    AFTER INSERT OR UPDATE OR DELETE ON billing_sync.feature_flag_actors
    FOR EACH ROW
    EXECUTE FUNCTION billing_sync.record_feature_flag_event();
