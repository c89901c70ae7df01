-- TRUNCATE fires no row trigger, so it would change flags without an audit row:
-- refuse it and point at DELETE, which is audited.
CREATE OR REPLACE FUNCTION billing_sync.forbid_truncate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of %.% is not audited; use DELETE', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'feature_not_supported';
END;
$function$;
