-- The function of the marker triggers billing_sync_customer_insert_mark and
-- billing_sync_customer_update_mark. Their WHEN clauses are always false (they exist for the side effect
-- of the WHEN: marking the transaction), so PostgreSQL never calls this; it does nothing if it ever is.
CREATE OR REPLACE FUNCTION billing_sync.sync_marker()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    RETURN NULL;
END;
$function$;
