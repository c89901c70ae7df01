CREATE TRIGGER billing_sync_touch_updated_at
    BEFORE UPDATE ON billing_sync.feature_flags
    FOR EACH ROW
    EXECUTE FUNCTION billing_sync.touch_updated_at();
