-- Refuses deleting or renaming the account_data_persistence row by hand (billing_sync.forbid_flag_retirement).
-- BEFORE: the refusal comes before the row, its actors (ON DELETE CASCADE) or the audit log are touched.
CREATE TRIGGER billing_sync_forbid_retirement
    BEFORE DELETE OR UPDATE OF name ON billing_sync.feature_flags
    FOR EACH ROW
    EXECUTE FUNCTION billing_sync.forbid_flag_retirement();
