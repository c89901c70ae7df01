-- Keeps the schema billing_sync_enabled in existence exactly while the flag account_data_persistence is
-- enabled (its kill switch is on): an AFTER trigger on billing_sync.feature_flags, in the transaction of
-- the change, so the two commit or roll back together.
--
-- Why: the customers sync triggers must decide whether to run for every customer write, and a write while
-- the flag is off must cost (almost) nothing (issue 7: TPS / no trigger >= 0.97). Reading the flag row
-- from a trigger's WHEN takes a function call that runs a query (about 4 us a statement, measured by
-- bench/flag_cost.py: too much for a single-row write of about 20 us); looking a schema name up is a
-- catalog cache hit (about 0.3 us), needs no privilege, and calls no function of ours. The flag table
-- stays the truth: the trigger functions read it (and the gates) whenever they run.
--
-- Timing: other sessions see the schema appear or vanish when they next read catalog changes, which is at
-- the start of their next transaction at the latest (within an open transaction, at its next lock on an
-- object it has not locked yet). Switching off is exact all the same (a session that still sees the schema
-- runs the trigger function, which reads the flag row and does nothing); switching on may leave the
-- remaining statements of transactions already open unsynced (the backfill brings them).
CREATE OR REPLACE FUNCTION billing_sync.sync_switch()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    enabled boolean := EXISTS (
        SELECT 1 FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence' AND f.enabled
    );
    mirrored boolean := pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL;
BEGIN
    -- Looked up first, so that a change that leaves the kill switch as it was does no DDL and says nothing.
    IF enabled AND NOT mirrored THEN
        CREATE SCHEMA billing_sync_enabled;
        COMMENT ON SCHEMA billing_sync_enabled IS
            'billing-sync: exists while account_data_persistence is enabled (billing_sync.sync_switch); empty';
    ELSIF mirrored AND NOT enabled THEN
        DROP SCHEMA billing_sync_enabled;
    END IF;
    RETURN NULL;
END;
$function$;
