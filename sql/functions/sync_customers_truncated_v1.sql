-- Statement trigger function of billing_sync_customer_truncate on public.customers (revision 0007): TRUNCATE
-- fires no row trigger, so the memberships would stay behind (and customers inserted later under the same ids
-- would inherit them) now that the foreign key, whose TRUNCATE ... CASCADE took them along, has given way to the
-- row triggers of billing_sync.sync_customer_removed. The memberships go in the same transaction (every customer
-- is gone, so every membership is an orphan). By DELETE, not TRUNCATE: a `TRUNCATE customers,
-- billing_account_memberships` has the memberships in use (and empty) already. Billing accounts stay.
CREATE OR REPLACE FUNCTION billing_sync.sync_customers_truncated()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    DELETE FROM public.billing_account_memberships;
    RETURN NULL;
END;
$function$;
