-- Every change to a flag row, by any client, leaves one audit row.
CREATE TRIGGER billing_sync_audit
    AFTER INSERT OR UPDATE OR DELETE ON billing_sync.feature_flags
    FOR EACH ROW
    EXECUTE FUNCTION billing_sync.record_feature_flag_event();
