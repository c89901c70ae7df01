-- AFTER row trigger function on the flag tables: one audit row per change, whoever
-- made it and however (sync-admin or plain SQL). Who and why travel in the
-- transaction-local settings billing_sync.actor and billing_sync.reason, set with
-- set_config(name, value, true); current_setting(name, true) reads them without an
-- EXCEPTION block. session_user is the login role even inside SECURITY DEFINER.
-- An UPDATE that changes nothing but updated_at writes no event.
CREATE OR REPLACE FUNCTION billing_sync.record_feature_flag_event()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    before_row jsonb;
    after_row jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        before_row := pg_catalog.to_jsonb(OLD);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        after_row := pg_catalog.to_jsonb(NEW);
    END IF;
    IF TG_OP = 'UPDATE' AND (before_row - 'updated_at') = (after_row - 'updated_at') THEN
        RETURN NULL;
    END IF;

    INSERT INTO billing_sync.feature_flag_events (
        flag_name, table_name, operation, database_user, application_name,
        actor, reason, transaction_id, before, after
    ) VALUES (
        coalesce(after_row ->> 'name', before_row ->> 'name',
                 after_row ->> 'flag_name', before_row ->> 'flag_name'),
        TG_TABLE_NAME,
        TG_OP,
        session_user,
        nullif(current_setting('application_name', true), ''),
        nullif(current_setting('billing_sync.actor', true), ''),
        nullif(current_setting('billing_sync.reason', true), ''),
        pg_catalog.txid_current(),
        before_row,
        after_row
    );
    RETURN NULL;
END;
$function$;
