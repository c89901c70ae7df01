-- BEFORE UPDATE trigger function: bump updated_at only when another column changed,
-- so that an UPDATE that changes nothing leaves the row (and the audit) untouched.
CREATE OR REPLACE FUNCTION billing_sync.touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF (pg_catalog.to_jsonb(NEW) - 'updated_at') IS DISTINCT FROM (pg_catalog.to_jsonb(OLD) - 'updated_at') THEN
        NEW.updated_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END;
$function$;
