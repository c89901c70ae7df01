-- billing_sync.drifted_customers(max_count): up to MAX_COUNT ids, smallest first, of the customers
-- account_data_persistence is on for now whose memberships are not their derived state (revision 0007,
-- issue 11): the customers billing_sync.account_drift counts as missing billing account, missing membership,
-- stale or duplicate membership. The backfill's final sweep repairs them, so that a run is finished only when
-- the current cohort is in its derived state, whatever changed while it ran (the gates, writes while the flag
-- was off, writes left to the repair), and customers that are gone but still have memberships (a delete under
-- snapshot isolation leaves them to the repair: billing_sync.sync_customer_removed).
-- Set-based, EXCEPT ALL in both directions like account_drift (shared field notes 6): one pass over the
-- cohort and the memberships, memory bounded by work_mem (hash or sort spills to disk).
CREATE OR REPLACE FUNCTION billing_sync.drifted_customers(max_count integer)
RETURNS bigint[]
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    WITH rollout AS MATERIALIZED (
        SELECT r.id, billing_sync.normalize_zuora_account_id(r.zuora_account_id) AS account
        FROM billing_sync.customers_in_rollout('account_data_persistence') r
    ),
    derived AS (
        SELECT o.id AS customer_id, o.account FROM rollout o WHERE o.account IS NOT NULL
    ),
    actual AS (
        SELECT m.customer_id, a.zuora_account_id AS account
        FROM public.billing_account_memberships m
        JOIN rollout o ON o.id = m.customer_id
        LEFT JOIN public.billing_accounts a ON a.id = m.billing_account_id
    ),
    differing AS (
        (SELECT customer_id, account FROM derived EXCEPT ALL SELECT customer_id, account FROM actual)
        UNION ALL
        (SELECT customer_id, account FROM actual EXCEPT ALL SELECT customer_id, account FROM derived)
        UNION ALL
        -- memberships whose customer is gone (a delete under snapshot isolation leaves them to the repair)
        SELECT m.customer_id, NULL
        FROM public.billing_account_memberships m
        WHERE NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = m.customer_id)
    )
    SELECT coalesce(array_agg(d.customer_id ORDER BY d.customer_id), '{}')
    FROM (SELECT DISTINCT x.customer_id FROM differing x ORDER BY x.customer_id LIMIT drifted_customers.max_count) d
$function$;
