-- Whether a flag is on for a customer, released (revision 0013, issue 13; v1 in 0002): account_data_persistence is
-- retired and on for every customer, with no flag row to read; any other flag is read as v1 reads it.
CREATE OR REPLACE FUNCTION billing_sync.flag_enabled_for(flag text, customer_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT flag_enabled_for.flag = 'account_data_persistence' OR coalesce((
        SELECT CASE
            WHEN NOT f.enabled THEN false
            WHEN f.everyone THEN true
            WHEN EXISTS (
                SELECT 1 FROM billing_sync.feature_flag_actors a
                WHERE a.flag_name = f.name AND a.customer_id = flag_enabled_for.customer_id
            ) THEN true
            WHEN f.percentage > 0 THEN billing_sync.unleash_bucket(f.name, flag_enabled_for.customer_id) <= f.percentage
            ELSE false
        END
        FROM billing_sync.feature_flags f
        WHERE f.name = flag_enabled_for.flag
    ), false)
$function$;
