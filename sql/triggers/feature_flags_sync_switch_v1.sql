-- Mirrors the kill switch of account_data_persistence into the existence of the schema
-- billing_sync_enabled (billing_sync.sync_switch says why). Once per statement that can change it.
CREATE TRIGGER billing_sync_sync_switch
    AFTER INSERT OR DELETE OR UPDATE OF enabled, name ON billing_sync.feature_flags
    FOR EACH STATEMENT
    EXECUTE FUNCTION billing_sync.sync_switch();
