-- billing_sync.drifted_customers(max_count): up to MAX_COUNT ids, smallest first, of the customers
-- account_data_persistence is on for now whose memberships are not their derived state (revision 0007,
-- issue 11): the customers billing_sync.account_drift counts as missing billing account, missing membership,
-- stale or duplicate membership. The backfill's final sweep repairs them, so that a run is finished only when
-- the current cohort is in its derived state, whatever changed while it ran (the gates, writes while the flag
-- was off, writes left to the repair), and customers that are gone but still have memberships (a delete under
-- snapshot isolation leaves them to the repair: billing_sync.sync_customer_removed).
-- Set-based, one pass over the cohort and the memberships, per customer: its memberships (how many, and their
-- least account) against its value normalised. That is the comparison account_drift makes with EXCEPT ALL in
-- both directions (a customer is in its derived state when it has exactly one membership, to the account its
-- value normalises to, or none when it has none), without EXCEPT ALL's hashed set operation, which holds the
-- whole cohort in memory whatever work_mem says (365 MB of backend memory per million customers on
-- PostgreSQL 15); here hashes and sorts spill to disk within work_mem. The value is normalised once per billing
-- account rather than once per customer where it can be: a customer whose one membership is to an account named
-- exactly like its value, an account whose name normalises to itself, is in its derived state without
-- normalising its value (customers share accounts; normalising is most of the pass). bench/scale.py measures it.
CREATE OR REPLACE FUNCTION billing_sync.drifted_customers(max_count integer)
RETURNS bigint[]
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    WITH cohort AS MATERIALIZED (
        SELECT r.id, r.zuora_account_id AS raw
        FROM billing_sync.customers_in_rollout('account_data_persistence') r
    ),
    actual AS (
        SELECT m.customer_id, count(*) AS n, min(a.zuora_account_id) AS account, bool_and(a.normal) AS normal
        FROM public.billing_account_memberships m
        LEFT JOIN (
            SELECT b.id, b.zuora_account_id,
                   billing_sync.normalize_zuora_account_id(b.zuora_account_id) IS NOT DISTINCT FROM b.zuora_account_id
                       AS normal
            FROM public.billing_accounts b
        ) a ON a.id = m.billing_account_id
        GROUP BY m.customer_id
    ),
    differing AS (
        SELECT o.id
        FROM cohort o
        LEFT JOIN actual x ON x.customer_id = o.id
        WHERE CASE
                  WHEN x.n = 1 AND x.account = o.raw AND x.normal THEN false
                  WHEN billing_sync.normalize_zuora_account_id(o.raw) IS NULL THEN x.customer_id IS NOT NULL
                  ELSE x.customer_id IS NULL OR x.n <> 1
                       OR x.account IS DISTINCT FROM billing_sync.normalize_zuora_account_id(o.raw)
              END
        UNION
        -- memberships whose customer is gone (a delete under snapshot isolation leaves them to the repair)
        SELECT m.customer_id
        FROM public.billing_account_memberships m
        WHERE NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = m.customer_id)
    )
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}')
    FROM (SELECT x.id FROM differing x
          WHERE x.id IS NOT NULL  -- an adopted table's nullable unique id: nothing a repair can reach
          ORDER BY x.id LIMIT drifted_customers.max_count) d
$function$;
