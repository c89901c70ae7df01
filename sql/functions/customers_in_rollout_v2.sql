-- The customers a flag is on for, released (revision 0013, issue 13; v1 in 0003): account_data_persistence is
-- retired and on for every customer, with no flag row to read; any other flag is read as v1 reads it. Used by the
-- backfill, verify (account_drift), drifted_customers and sync_customers, which keep working unchanged.
CREATE OR REPLACE FUNCTION billing_sync.customers_in_rollout(flag text)
RETURNS TABLE (id bigint, zuora_account_id text)
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT c.id, c.zuora_account_id
    FROM public.customers c
    WHERE customers_in_rollout.flag = 'account_data_persistence'
    UNION ALL
    SELECT c.id, c.zuora_account_id
    FROM billing_sync.feature_flags f
    CROSS JOIN public.customers c
    WHERE customers_in_rollout.flag <> 'account_data_persistence'
      AND f.name = customers_in_rollout.flag
      AND f.enabled
      AND (f.everyone
           OR EXISTS (
               SELECT 1 FROM billing_sync.feature_flag_actors a
               WHERE a.flag_name = f.name AND a.customer_id = c.id)
           OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, c.id) <= f.percentage));
END;
