-- The mirror of the kill switch of account_data_persistence (billing_sync.sync_switch says why): an empty
-- schema that exists exactly while the flag is enabled. This file sets its initial state; from then on the
-- trigger billing_sync_sync_switch on billing_sync.feature_flags keeps it. Revision 0006 runs it after
-- creating that trigger, in the same transaction. Nothing is ever created in it and nothing is granted on it:
-- the customers triggers only ask whether it exists (pg_catalog.to_regnamespace needs no privilege).
DO $mirror$
DECLARE
    enabled boolean := EXISTS (
        SELECT 1 FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence' AND f.enabled
    );
    mirrored boolean := EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'billing_sync_enabled');
BEGIN
    IF enabled AND NOT mirrored THEN
        CREATE SCHEMA billing_sync_enabled;
        COMMENT ON SCHEMA billing_sync_enabled IS
            'billing-sync: exists while account_data_persistence is enabled (billing_sync.sync_switch); keep it empty';
    ELSIF mirrored AND NOT enabled THEN
        DROP SCHEMA billing_sync_enabled;  -- made by hand before this revision: it would switch nothing on
    END IF;
END
$mirror$;
