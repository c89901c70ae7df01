-- Calibration only, not a sync: a trigger function that is never called (see the triggers of this folder).
CREATE OR REPLACE FUNCTION billing_sync.sync_noop()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    RETURN NULL;
END;
$function$;
