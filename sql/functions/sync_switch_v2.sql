-- Statement trigger function of billing_sync_sync_switch on billing_sync.feature_flags (revision 0010; v1 in 0006):
-- keeps
-- the empty schema billing_sync_enabled in existence exactly while the kill switch of account_data_persistence
-- is on, in the transaction of the change, so that the two commit or roll back together.
--
-- Why a mirror: the customers sync triggers must decide on every customer write whether to run, and a write
-- while the flag is off must cost (almost) nothing (issue 7: TPS / no trigger >= 0.97). Reading the flag row
-- from a trigger's WHEN takes a function of ours that runs a query (about 4 us a statement, bench/flag_cost.py,
-- against about 20 us for a whole single-row write); looking a schema name up with the built-in
-- pg_catalog.to_regnamespace is a catalog cache hit, needs no privilege and runs none of our code. The flag
-- table stays the truth: the sync functions read the kill switch and the gates every time they run.
--
-- Timing: a session looks the schema up in its catalog cache, which takes in catalog changes at the start of
-- each transaction (and when it locks a table it has not locked yet in its transaction). Switching off is
-- exact all the same: a session that still sees the schema runs the sync function, which reads the flag row
-- and writes nothing. Switching on reaches a session at its next transaction: the statements of a transaction
-- that was already open may stay unsynced (the backfill brings them, as it brings what was written while the
-- flag was off).
--
-- The schema is looked up with a query on pg_namespace (this statement's snapshot), not to_regnamespace: the
-- catalog cache may not have taken in a switch that another transaction committed while this one waited for
-- the flag row, and acting on it would try to create a schema that exists. The flag row's lock orders the
-- transactions that change the kill switch; one that changes anything else finds the mirror and the flag in
-- agreement in its snapshot and does nothing.
-- v2 (revision 0010, issue 12): the kill switch never fails because of who owns the mirror. Anyone with CREATE on
-- the database can create the schema billing_sync_enabled first; v1 then failed the kill switch ("must be owner of
-- schema") when it tried to drop or rename it. v2 leaves a schema it does not own in place, with a warning: the
-- kill switch still holds, since every sync function reads the flag row itself (a write then pays for the call
-- of the sync function, which writes nothing), and `sync-admin doctor` reports the owner and the fix.
CREATE OR REPLACE FUNCTION billing_sync.sync_switch()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    enabled boolean;
    mirrored boolean;
    aside text;
BEGIN
    SELECT EXISTS (SELECT 1 FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence' AND f.enabled),
           EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'billing_sync_enabled')
    INTO enabled, mirrored;
    -- A change that leaves the kill switch as it was does no DDL.
    IF enabled AND NOT mirrored THEN
        CREATE SCHEMA billing_sync_enabled;
        COMMENT ON SCHEMA billing_sync_enabled IS
            'billing-sync: exists while account_data_persistence is enabled (billing_sync.sync_switch); keep it empty';
    ELSIF mirrored AND NOT enabled THEN
        -- The kill switch must never fail, and must not drop what someone put in the schema by mistake
        -- (everything in a schema depends on it): such a schema is renamed aside, with a warning. A schema
        -- someone else owns can be neither dropped nor renamed: it stays, with a warning (see above). 'USAGE', not
        -- 'MEMBER': dropping needs the owner's rights, which a NOINHERIT member (PostgreSQL 16's CREATEROLE grants
        -- are INHERIT FALSE by default) does not use without SET ROLE.
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                       WHERE n.nspname = 'billing_sync_enabled' AND pg_catalog.pg_has_role(n.nspowner, 'USAGE')) THEN
            RAISE WARNING 'schema billing_sync_enabled is owned by another role: left in place'
                USING HINT = 'The flag is off all the same; run `sync-admin doctor` for the fix.';
        ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                   WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
                     AND d.refobjid = 'billing_sync_enabled'::regnamespace) THEN
            aside := 'billing_sync_enabled_kept_' || pg_catalog.txid_current();
            EXECUTE pg_catalog.format('ALTER SCHEMA billing_sync_enabled RENAME TO %I', aside);
            RAISE WARNING 'schema billing_sync_enabled was not empty: renamed to %', aside
                USING HINT = 'It only mirrors the kill switch of account_data_persistence; move its objects elsewhere.';
        ELSE
            DROP SCHEMA billing_sync_enabled;
        END IF;
    END IF;
    RETURN NULL;
END;
$function$;
