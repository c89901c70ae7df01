-- billing_sync.sync_customers(customer_ids): the repair. Brings each of these customers to the sync's derived
-- state as the customer row is now (revision 0007, issue 11): if account_data_persistence is on for it now,
-- a member of exactly the billing account its zuora_account_id normalises to (none when it has none), the
-- account created if missing; if the flag is off for it now, nothing is written (the sync does not maintain
-- it). Customers that no longer exist lose the memberships they still have (a delete under snapshot isolation
-- leaves them to the repair). Every customer done also loses its rows in billing_sync.sync_repairs.
-- Returns what it did, and left_ids: the customers it could not do now, because a live transaction holds the
-- customer row or the claim on its new account. Callers retry those later (`sync-admin heal`, the backfill).
--
-- It never waits for another transaction, so it can neither stall a customer write for longer than its own
-- short transaction nor take part in a deadlock (a process that never waits is in no wait cycle):
-- * customers are locked FOR NO KEY UPDATE SKIP LOCKED, in id order. A customer write holding the row is
--   skipped (left); a write that comes after the lock waits for this transaction only (a few milliseconds;
--   the lock conflicts with UPDATE and DELETE, not with the KEY SHARE locks of the application's foreign
--   keys). Two repairers (heal and a backfill) never work on one customer at once.
-- * new accounts only through billing_sync.claim_accounts (try-locks); unclaimed ones leave their customers.
-- * membership writes touch only rows of customers this transaction holds, so no other writer has them
--   locked or half-inserted.
-- * the rows it reads are the latest committed (READ COMMITTED: each statement a new snapshot). Callers run
--   it in READ COMMITTED; under a snapshot isolation level it raises (see the first check) instead of
--   writing a state derived from an old snapshot.
-- No EXCEPTION block, no savepoint: one transaction id per call.
CREATE OR REPLACE FUNCTION billing_sync.sync_customers(
    customer_ids bigint[],
    OUT synced integer,
    OUT accounts_created integer,
    OUT memberships_added integer,
    OUT memberships_removed integer,
    OUT left_ids bigint[]
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    locked_ids bigint[];
    in_rollout_ids bigint[];
    in_rollout_accounts text[];
    missing text[];
    claimed text[];
    done_ids bigint[];
    removed integer;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'billing_sync.sync_customers must run under READ COMMITTED, not %',
            pg_catalog.current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    synced := 0;
    accounts_created := 0;
    memberships_added := 0;
    memberships_removed := 0;

    -- 1. The customers, locked without waiting, with their current value and whether the flag is on for them.
    WITH locked AS MATERIALIZED (
        SELECT c.id, c.zuora_account_id
        FROM public.customers c
        WHERE c.id = ANY (customer_ids)
        ORDER BY c.id
        FOR NO KEY UPDATE OF c SKIP LOCKED
    )
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'),
           coalesce(array_agg(l.id ORDER BY l.id) FILTER (WHERE r.id IS NOT NULL), '{}'),
           coalesce(array_agg(billing_sync.normalize_zuora_account_id(l.zuora_account_id) ORDER BY l.id)
                    FILTER (WHERE r.id IS NOT NULL), '{}')
    INTO locked_ids, in_rollout_ids, in_rollout_accounts
    FROM locked l
    LEFT JOIN billing_sync.customers_in_rollout('account_data_persistence') r ON r.id = l.id;

    -- Held by a live transaction (exists, not locked): left for later. Gone: done.
    left_ids := ARRAY(
        SELECT c.id FROM public.customers c WHERE c.id = ANY (customer_ids)
        EXCEPT
        SELECT u.id FROM unnest(locked_ids) AS u(id)
        ORDER BY 1
    );

    -- Gone (deleted and committed): their memberships go too (under snapshot isolation the delete trigger,
    -- billing_sync.sync_customer_removed, leaves them to this repair). Rows another repairer is deleting are
    -- skipped, not waited for.
    DELETE FROM public.billing_account_memberships m
    WHERE m.id IN (
        SELECT o.id FROM public.billing_account_memberships o
        WHERE o.customer_id = ANY (customer_ids)
          AND NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = o.customer_id)
        FOR UPDATE SKIP LOCKED
    );
    GET DIAGNOSTICS memberships_removed = ROW_COUNT;

    -- 2. Missing accounts, claimed without waiting and created in value order (never updated).
    missing := ARRAY(
        SELECT DISTINCT u.account
        FROM unnest(in_rollout_accounts) AS u(account)
        WHERE u.account IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = u.account)
    );
    IF pg_catalog.cardinality(missing) > 0 THEN
        claimed := billing_sync.claim_accounts(missing);
        INSERT INTO public.billing_accounts (zuora_account_id)
        SELECT c.account FROM unnest(claimed) AS c(account) ORDER BY c.account
        ON CONFLICT (zuora_account_id) DO NOTHING;
        GET DIAGNOSTICS accounts_created = ROW_COUNT;

        -- Customers whose account still does not exist (claimed elsewhere): left, untouched.
        SELECT coalesce(array_agg(u.id ORDER BY u.id) FILTER (WHERE u.keep), '{}'),
               coalesce(array_agg(u.account ORDER BY u.id) FILTER (WHERE u.keep), '{}'),
               left_ids || coalesce(array_agg(u.id ORDER BY u.id) FILTER (WHERE NOT u.keep), '{}')
        INTO in_rollout_ids, in_rollout_accounts, left_ids
        FROM (
            SELECT x.id, x.account,
                   x.account IS NULL
                   OR EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = x.account) AS keep
            FROM unnest(in_rollout_ids, in_rollout_accounts) AS x(id, account)
        ) u;
    END IF;

    -- 3. Every membership that is not the derived one (stale, orphaned, or all when there is no account),
    -- then the derived one where it is missing.
    DELETE FROM public.billing_account_memberships m
    USING unnest(in_rollout_ids, in_rollout_accounts) AS l(id, account)
    WHERE m.customer_id = l.id
      AND NOT EXISTS (
          SELECT 1 FROM public.billing_accounts a
          WHERE a.id = m.billing_account_id AND a.zuora_account_id = l.account);
    GET DIAGNOSTICS removed = ROW_COUNT;
    memberships_removed := memberships_removed + removed;

    INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
    SELECT a.id, l.id
    FROM unnest(in_rollout_ids, in_rollout_accounts) AS l(id, account)
    JOIN public.billing_accounts a ON a.zuora_account_id = l.account
    WHERE NOT EXISTS (
        SELECT 1 FROM public.billing_account_memberships m
        WHERE m.customer_id = l.id AND m.billing_account_id = a.id)
    ORDER BY l.id
    ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
    GET DIAGNOSTICS memberships_added = ROW_COUNT;
    synced := pg_catalog.cardinality(in_rollout_ids);

    -- 4. Done: every customer asked for but those left. Their queued repairs go, skipping rows another
    -- repairer has locked (it is deleting them too).
    done_ids := ARRAY(
        SELECT u.id FROM unnest(customer_ids) AS u(id)
        EXCEPT
        SELECT l.id FROM unnest(left_ids) AS l(id)
    );
    DELETE FROM billing_sync.sync_repairs q
    WHERE q.id IN (
        SELECT s.id FROM billing_sync.sync_repairs s
        WHERE s.customer_id = ANY (done_ids)
        FOR UPDATE SKIP LOCKED
    );
END;
$function$;
