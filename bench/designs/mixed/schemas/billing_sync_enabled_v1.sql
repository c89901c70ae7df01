-- The initial state of the mirror (billing_sync.sync_switch): the schema exists iff the flag is enabled.
-- A revision runs this after creating the trigger on feature_flags.
DO $mirror$
BEGIN
    IF EXISTS (SELECT 1 FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence' AND f.enabled) THEN
        CREATE SCHEMA IF NOT EXISTS billing_sync_enabled;
    END IF;
END
$mirror$;
