-- billing_sync.backfill_batch(run_id, batch_size): one batch of a backfill run (revision 0007, issue 11; v1 in
-- 0003). `sync-admin backfill` calls it once per transaction until it returns the run row with status
-- 'finished'. Two phases:
-- * range: the next batch_size customer ids after the run's last_id (up to the run's max_id). The customers
--   of it that account_data_persistence is on for and that are not in their derived state (read without
--   locks) are repaired by billing_sync.sync_customers.
-- * sweep, once the range is done: up to batch_size customers of the *current* cohort that are out of their
--   derived state (billing_sync.drifted_customers: the gates may have changed since the run started, writes
--   may have happened while the flag was off for them) and the customers queued in
--   billing_sync.sync_repairs, repaired the same way. The run is finished only by a sweep that finds no
--   customer of the current cohort out of its derived state but those whose live write queued their repair
--   itself (in flight: the repair service's, see below), and nothing the backfill left.
-- The run row advances in the same transaction, so a batch is done exactly once or not at all.
--
-- Beside live traffic (field notes 6 and 8): billing_sync.sync_customers never waits for another
-- transaction. A customer held by a live transaction, or whose new account another transaction is
-- creating, is left: counted in `busy` and queued in billing_sync.sync_repairs (backfill_left), where the
-- sweep and `sync-admin heal` find it again. So a batch can neither stall nor deadlock a customer write: a
-- customer write waits at most for a batch's own short transaction (FOR NO KEY UPDATE of the rows it fixes).
-- Like the trigger: no EXCEPTION block, no savepoint.
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
    n_scanned bigint := 0;
    n_in_rollout bigint := 0;
    candidates bigint[];
    drifted bigint[];
    n_accounts bigint := 0;
    n_added bigint := 0;
    n_removed bigint := 0;
    left_ids bigint[];
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

    -- The range: ids (after_id, upto_id], at most batch_size customers, none past the run's max_id.
    after_id := coalesce(run.last_id, -9223372036854775808);
    SELECT max(b.id), count(*) INTO upto_id, n_scanned
    FROM (
        SELECT c.id FROM public.customers c
        WHERE c.id > after_id AND c.id <= run.max_id
        ORDER BY c.id
        LIMIT backfill_batch.batch_size
    ) b;

    IF upto_id IS NULL THEN
        -- The sweep: the current cohort's drift and the queued repairs.
        drifted := billing_sync.drifted_customers(backfill_batch.batch_size);
        candidates := ARRAY(
            SELECT d.id FROM unnest(drifted) AS d(id)
            UNION
            SELECT q.customer_id
            FROM (SELECT s.customer_id FROM billing_sync.sync_repairs s ORDER BY s.id LIMIT backfill_batch.batch_size) q
            ORDER BY 1
        );
        -- Finished when the whole drift is known (fewer than batch_size) and every drifted customer has a repair
        -- queued by the live write that left it (account_contended, snapshot_isolation): those are the repair
        -- service's, which does them as soon as that write's transaction has ended, and under steady traffic there
        -- are always a few in flight, so waiting for them would never end. What the backfill itself left
        -- (backfill_left), or drift with nothing queued (a write while the flag was off for the customer, a gate
        -- change), keeps the run going.
        IF pg_catalog.cardinality(drifted) < backfill_batch.batch_size AND NOT EXISTS (
            SELECT 1 FROM unnest(drifted) AS d(id)
            WHERE NOT EXISTS (
                SELECT 1 FROM billing_sync.sync_repairs q WHERE q.customer_id = d.id AND q.reason <> 'backfill_left')
        ) AND NOT EXISTS (SELECT 1 FROM billing_sync.sync_repairs q WHERE q.reason = 'backfill_left') THEN
            UPDATE billing_sync.backfill_runs r
            SET status = 'finished', finished_at = pg_catalog.now(), updated_at = pg_catalog.now()
            WHERE r.id = run.id
            RETURNING r.* INTO run;
            RETURN run;
        END IF;
    ELSE
        -- Customers of the range in the rollout, and those not in their derived state (no locks): a member of
        -- exactly the billing account its value normalises to, or of none when it has none (the comparison of
        -- billing_sync.drifted_customers). The range's memberships are read by one range scan of their index,
        -- whatever their statistics say (they lag behind while the backfill fills the table); each value is
        -- normalised at most once, and not at all when the customer's one membership is to an account named
        -- exactly like its value, an account whose name normalises to itself.
        WITH batch AS MATERIALIZED (
            SELECT r.id, r.zuora_account_id AS raw
            FROM billing_sync.customers_in_rollout('account_data_persistence') r
            WHERE r.id > after_id AND r.id <= upto_id
        ),
        actual AS (
            SELECT m.customer_id, count(*) AS n, min(a.zuora_account_id) AS account,
                   bool_and(billing_sync.normalize_zuora_account_id(a.zuora_account_id)
                            IS NOT DISTINCT FROM a.zuora_account_id) AS normal
            FROM public.billing_account_memberships m
            LEFT JOIN public.billing_accounts a ON a.id = m.billing_account_id
            WHERE m.customer_id > after_id AND m.customer_id <= upto_id
            GROUP BY m.customer_id
        )
        SELECT count(*),
               array_agg(b.id ORDER BY b.id) FILTER (
                   WHERE CASE
                             WHEN x.n = 1 AND x.account = b.raw AND x.normal THEN false
                             WHEN billing_sync.normalize_zuora_account_id(b.raw) IS NULL THEN x.customer_id IS NOT NULL
                             ELSE x.customer_id IS NULL OR x.n <> 1
                                  OR x.account IS DISTINCT FROM billing_sync.normalize_zuora_account_id(b.raw)
                         END)
        INTO n_in_rollout, candidates
        FROM batch b
        LEFT JOIN actual x ON x.customer_id = b.id;
    END IF;

    IF pg_catalog.cardinality(candidates) > 0 THEN
        SELECT o.accounts_created, o.memberships_added, o.memberships_removed, o.left_ids
        INTO n_accounts, n_added, n_removed, left_ids
        FROM billing_sync.sync_customers(candidates) o;
        -- Left: held by a live transaction, or its account claimed by one. Queued, so that the sweep and
        -- `sync-admin heal` come back to it once that transaction has ended.
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        SELECT l.id, 'backfill_left', pg_catalog.txid_current()
        FROM unnest(left_ids) AS l(id)
        WHERE NOT EXISTS (SELECT 1 FROM billing_sync.sync_repairs s WHERE s.customer_id = l.id)
        ORDER BY l.id;
    END IF;

    UPDATE billing_sync.backfill_runs r
    SET last_id = coalesce(upto_id, r.last_id),
        scanned = r.scanned + n_scanned,
        in_rollout = r.in_rollout + n_in_rollout,
        out_of_state = r.out_of_state + CASE WHEN upto_id IS NULL THEN 0 ELSE coalesce(pg_catalog.cardinality(candidates), 0) END,
        accounts_created = r.accounts_created + n_accounts,
        memberships_added = r.memberships_added + n_added,
        memberships_removed = r.memberships_removed + n_removed,
        busy = r.busy + coalesce(pg_catalog.cardinality(left_ids), 0),
        batches = r.batches + 1,
        updated_at = pg_catalog.now()
    WHERE r.id = run.id
    RETURNING r.* INTO run;
    RETURN run;
END;
$function$;
