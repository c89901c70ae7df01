-- billing_sync.backfill_batch(run_id, batch_size): one batch of a backfill run. `sync-admin backfill`
-- calls it once per transaction (with SET LOCAL lock_timeout and statement_timeout) until it returns
-- the run row with status 'finished'. The batch is the next batch_size customer ids after the run's
-- last_id; every customer of it that account_data_persistence is on for ends in the derived state of
-- the sync trigger: a member of exactly the billing account its zuora_account_id normalises to (none
-- when that is NULL), the account created if missing. The run row advances in the same transaction,
-- so a batch is done exactly once or not at all.
--
-- Beside live traffic (shared field notes 6; pg_ivm#104). A batch that wrote from what it read
-- without a lock could undo a concurrent customer update: it reads account X, the update moves the
-- customer to Y and its trigger syncs Y and commits, then the batch adds X back. So:
-- 1. Read the batch without locks and pick the customers that are not in their derived state. A
--    customer that is in it needs no write; if it is updated meanwhile, its trigger keeps it right.
-- 2. Lock only those FOR SHARE, in id order. FOR SHARE (not FOR KEY SHARE) conflicts with the
--    FOR NO KEY UPDATE lock of any update, so a concurrent update either committed before the lock
--    (and the lock returns its new value) or waits for this commit (and its trigger runs after us).
-- 3. Fix the locked customers with statements that each take a new snapshot (this function is
--    VOLATILE): they see the accounts and memberships of updates that committed while we waited.
-- Locks are taken in one order (customer ids ascending, then account values ascending) and every
-- insert is ON CONFLICT DO NOTHING: a billing_accounts row is never updated, so never row-locked.
-- Like the trigger: no EXCEPTION block, no savepoint; a lock or statement timeout aborts the whole
-- batch, and sync-admin retries it as a smaller batch.
CREATE OR REPLACE FUNCTION billing_sync.backfill_batch(run_id bigint, batch_size integer)
RETURNS billing_sync.backfill_runs
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    run billing_sync.backfill_runs;
    after_id bigint;
    upto_id bigint;
    n_scanned bigint;
    n_in_rollout bigint;
    candidates bigint[];
    locked_ids bigint[];
    locked_accounts text[];
    n_accounts bigint := 0;
    n_removed bigint := 0;
    n_added bigint := 0;
    n_busy bigint := 0;
    busy_free text[];
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, not %', batch_size USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The run row's lock also keeps two sessions from ever advancing the same run.
    SELECT r.* INTO run FROM billing_sync.backfill_runs r WHERE r.id = backfill_batch.run_id FOR UPDATE;
    IF NOT FOUND OR run.status <> 'running' THEN
        RAISE EXCEPTION 'backfill run % is not running', backfill_batch.run_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- The batch: ids (after_id, upto_id], at most batch_size customers, none past the run's max_id.
    after_id := coalesce(run.last_id, -9223372036854775808);
    SELECT max(b.id), count(*) INTO upto_id, n_scanned
    FROM (
        SELECT c.id FROM public.customers c
        WHERE c.id > after_id AND c.id <= run.max_id
        ORDER BY c.id
        LIMIT backfill_batch.batch_size
    ) b;

    IF upto_id IS NULL THEN
        UPDATE billing_sync.backfill_runs r
        SET status = 'finished', finished_at = pg_catalog.now(), updated_at = pg_catalog.now()
        WHERE r.id = run.id
        RETURNING r.* INTO run;
        RETURN run;
    END IF;

    -- 1. Customers of the batch in the rollout, and those not in their derived state (no locks).
    SELECT count(*), array_agg(d.id ORDER BY d.id) FILTER (WHERE d.out_of_state)
    INTO n_in_rollout, candidates
    FROM (
        SELECT r.id,
               (n.account IS NOT NULL AND NOT EXISTS (
                    SELECT 1
                    FROM public.billing_account_memberships m
                    JOIN public.billing_accounts a ON a.id = m.billing_account_id
                    WHERE m.customer_id = r.id AND a.zuora_account_id = n.account))
               OR EXISTS (
                    SELECT 1 FROM public.billing_account_memberships m
                    WHERE m.customer_id = r.id
                      AND NOT EXISTS (
                          SELECT 1 FROM public.billing_accounts a
                          WHERE a.id = m.billing_account_id AND a.zuora_account_id = n.account)) AS out_of_state
        FROM billing_sync.customers_in_rollout('account_data_persistence') r
        CROSS JOIN LATERAL (SELECT billing_sync.normalize_zuora_account_id(r.zuora_account_id) AS account) n
        WHERE r.id > after_id AND r.id <= upto_id
    ) d;

    IF candidates IS NOT NULL THEN
        -- 2. Lock them in id order; a customer deleted meanwhile drops out, an updated one shows its new value.
        SELECT array_agg(l.id ORDER BY l.id), array_agg(l.account ORDER BY l.id)
        INTO locked_ids, locked_accounts
        FROM (
            SELECT c.id, billing_sync.normalize_zuora_account_id(c.zuora_account_id) AS account
            FROM public.customers c
            WHERE c.id = ANY (candidates)
            ORDER BY c.id
            FOR SHARE OF c
        ) l;
    END IF;

    IF locked_ids IS NOT NULL THEN
        -- 3a. Missing billing accounts, in value order; never updated (an update would row-lock a shared
        -- account). Like the trigger (billing_sync.create_billing_account), an account is created only
        -- under its advisory lock, and only taken with a try: a live write creating the same account
        -- holds it, and waiting for that write could close a deadlock cycle whose victim is the
        -- customer write. Customers whose new account is busy are left out of this batch (counted in
        -- `busy`; the next run reaches them).
        SELECT array_agg(n.account ORDER BY n.account) FILTER (
                   WHERE pg_catalog.pg_try_advisory_xact_lock(7300001, billing_sync.account_lock_key(n.account)))
        INTO busy_free
        FROM (
            SELECT DISTINCT l.account
            FROM unnest(locked_ids, locked_accounts) AS l(id, account)
            WHERE l.account IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = l.account)
            ORDER BY l.account
        ) n;
        INSERT INTO public.billing_accounts (zuora_account_id)
        SELECT account FROM unnest(busy_free) AS f(account) ORDER BY account
        ON CONFLICT (zuora_account_id) DO NOTHING;
        GET DIAGNOSTICS n_accounts = ROW_COUNT;

        -- Customers whose account neither exists nor could be created now: not touched in this batch.
        SELECT array_agg(l.id ORDER BY l.id) FILTER (WHERE l.keep), array_agg(l.account ORDER BY l.id) FILTER (WHERE l.keep),
               count(*) FILTER (WHERE NOT l.keep)
        INTO locked_ids, locked_accounts, n_busy
        FROM (
            SELECT u.id, u.account,
                   u.account IS NULL
                   OR EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = u.account) AS keep
            FROM unnest(locked_ids, locked_accounts) AS u(id, account)
        ) l;

        -- 3b. Every membership that is not the derived one: stale, orphaned (account gone), or all of
        -- them when the customer has no account.
        DELETE FROM public.billing_account_memberships m
        USING unnest(locked_ids, locked_accounts) AS l(id, account)
        WHERE m.customer_id = l.id
          AND NOT EXISTS (
              SELECT 1 FROM public.billing_accounts a
              WHERE a.id = m.billing_account_id AND a.zuora_account_id = l.account);
        GET DIAGNOSTICS n_removed = ROW_COUNT;

        -- 3c. The derived membership where it is missing.
        INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
        SELECT a.id, l.id
        FROM unnest(locked_ids, locked_accounts) AS l(id, account)
        JOIN public.billing_accounts a ON a.zuora_account_id = l.account
        WHERE NOT EXISTS (
            SELECT 1 FROM public.billing_account_memberships m
            WHERE m.customer_id = l.id AND m.billing_account_id = a.id)
        ORDER BY l.id
        ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
        GET DIAGNOSTICS n_added = ROW_COUNT;
    END IF;

    UPDATE billing_sync.backfill_runs r
    SET last_id = upto_id,
        scanned = r.scanned + n_scanned,
        in_rollout = r.in_rollout + n_in_rollout,
        out_of_state = r.out_of_state + coalesce(pg_catalog.cardinality(locked_ids), 0) + n_busy,
        accounts_created = r.accounts_created + n_accounts,
        memberships_added = r.memberships_added + n_added,
        memberships_removed = r.memberships_removed + n_removed,
        busy = r.busy + n_busy,
        batches = r.batches + 1,
        updated_at = pg_catalog.now()
    WHERE r.id = run.id
    RETURNING r.* INTO run;
    RETURN run;
END;
$function$;
