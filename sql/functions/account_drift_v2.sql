-- billing_sync.account_drift(examples): the drift report of `sync-admin verify`, in one set-based
-- statement. For the customers account_data_persistence is on for, the derived memberships
-- (customer, normalised zuora_account_id) are compared with the actual ones (customer, the joined
-- account's value) with EXCEPT ALL in both directions (shared field notes 6), and what differs is
-- classified. One row per item, always in this order, zero when clean:
--   in_rollout                      customers the flag is on for (row_count = customers)
--   missing_billing_account         derived account has no billing_accounts row (row_count = customers)
--   missing_membership              the account exists, the customer is not its member (row_count = customers)
--   stale_membership                a membership to another account than the derived one (row_count = memberships)
--   duplicate_or_orphan_membership  a second copy of the derived membership, a membership whose billing
--                                   account is gone, or one whose customer is gone (the last two only
--                                   happen with foreign keys bypassed; the last is checked for every
--                                   membership, since a missing customer has no rollout decision)
--   sync_skip                       customers whose value is not blank but not an account either, so the
--                                   sync treats it as no account (not drift: reported for the rollout)
-- customer_count and account_count count distinct ids and values; examples are the smallest customer ids.
-- Python receives six rows whatever the table size.
-- v2 (revision 0008, issue 11): SET enable_hashagg = off. The planner estimates the distinct groups of a CTE at
-- 200 whatever its size, so v1's EXCEPT ALL ran as a hashed set operation, which never spills to disk: the
-- server process of `verify` grew to 384 MiB at 1M customers and 2.9 GiB at 10M (bench/scale.py, PostgreSQL 15,
-- work_mem 4MB). Sorted, the same comparison stays within work_mem and spills the rest to temporary files.
CREATE OR REPLACE FUNCTION billing_sync.account_drift(examples integer)
RETURNS TABLE (item text, row_count bigint, customer_count bigint, account_count bigint, example_customer_ids bigint[])
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_hashagg = off
AS $function$
    WITH rollout AS MATERIALIZED (
        SELECT r.id,
               r.zuora_account_id AS raw,
               billing_sync.normalize_zuora_account_id(r.zuora_account_id) AS account
        FROM billing_sync.customers_in_rollout('account_data_persistence') r
    ),
    derived AS (
        SELECT o.id AS customer_id, o.account FROM rollout o WHERE o.account IS NOT NULL
    ),
    actual AS (
        -- an orphaned membership (its billing account gone) has account NULL, which no derived row has
        SELECT m.customer_id, a.zuora_account_id AS account
        FROM public.billing_account_memberships m
        JOIN rollout o ON o.id = m.customer_id
        LEFT JOIN public.billing_accounts a ON a.id = m.billing_account_id
    ),
    missing AS (
        SELECT customer_id, account FROM derived
        EXCEPT ALL
        SELECT customer_id, account FROM actual
    ),
    extra AS (
        SELECT customer_id, account FROM actual
        EXCEPT ALL
        SELECT customer_id, account FROM derived
    ),
    drift AS (
        SELECT CASE WHEN a.id IS NULL THEN 'missing_billing_account' ELSE 'missing_membership' END AS item,
               x.customer_id, x.account
        FROM missing x
        LEFT JOIN public.billing_accounts a ON a.zuora_account_id = x.account
        UNION ALL
        -- derived has one row per customer, so the join never multiplies extra rows
        SELECT CASE WHEN x.account IS NULL OR d.customer_id IS NOT NULL THEN 'duplicate_or_orphan_membership'
                    ELSE 'stale_membership' END,
               x.customer_id, x.account
        FROM extra x
        LEFT JOIN derived d ON d.customer_id = x.customer_id AND d.account = x.account
        UNION ALL
        SELECT 'duplicate_or_orphan_membership', m.customer_id, NULL
        FROM public.billing_account_memberships m
        WHERE NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = m.customer_id)
        UNION ALL
        SELECT 'sync_skip', o.id, o.raw
        FROM rollout o
        WHERE o.account IS NULL AND pg_catalog.btrim(o.raw, E' \t\n\r\x0b\f') <> ''
    ),
    report AS (
        SELECT 1 AS position, 'in_rollout' AS item, count(*) AS row_count, count(*) AS customer_count,
               0::bigint AS account_count, '{}'::bigint[] AS example_customer_ids
        FROM rollout
        UNION ALL
        SELECT k.position,
               k.item,
               count(d.customer_id),
               count(DISTINCT d.customer_id),
               count(DISTINCT d.account),
               coalesce((array_agg(DISTINCT d.customer_id ORDER BY d.customer_id)
                         FILTER (WHERE d.customer_id IS NOT NULL))[1:greatest(examples, 0)], '{}')
        FROM (VALUES (2, 'missing_billing_account'),
                     (3, 'missing_membership'),
                     (4, 'stale_membership'),
                     (5, 'duplicate_or_orphan_membership'),
                     (6, 'sync_skip')) AS k(position, item)
        LEFT JOIN drift d ON d.item = k.item
        GROUP BY k.position, k.item
    )
    SELECT item, row_count, customer_count, account_count, example_customer_ids FROM report ORDER BY position
$function$;
