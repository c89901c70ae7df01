-- Public SQL interface: is FLAG on for CUSTOMER_ID? The sync triggers call this too.
-- Kill switch first, then the gates cheapest first; CASE fixes the evaluation order, so
-- a flag that is off, or on for everyone, computes no hash, and the actor gate is a
-- primary-key lookup. The bucket depends on (flag, id) alone: raising the percentage
-- only ever adds customers. An unknown flag is off.
CREATE OR REPLACE FUNCTION billing_sync.flag_enabled_for(flag text, customer_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT coalesce((
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
