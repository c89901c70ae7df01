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
-- * cost: every statement reaches the billing tables and the queue through their indexes, per customer (a
--   scalar or LATERAL subquery) or by primary key, never by a join the planner could turn into a scan of a whole
--   table: a backfill calls this while those tables grow from empty and their statistics lag behind, and a hash
--   join planned on a stale estimate scanned the whole memberships table in every batch (1M customers took
--   134 s of batches where the same work as one statement took 40 s). Each customer's value is normalised once,
--   its account looked up once; what cannot apply (gone customers, queued id changes) is skipped unless present.
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
    -- The locked customers the flag is on for, in id order, with their normalised account (NULL: none) and the
    -- id of its billing account (NULL: no account, or the account does not exist yet).
    ids bigint[];
    accounts text[];
    account_ids bigint[];
    existing_ids bigint[];
    gone_ids bigint[];
    missing text[];
    claimed text[];
    stale_ids bigint[];
    add_ids bigint[];
    add_account_ids bigint[];
    done_ids bigint[];
    removed integer;
    queued boolean;
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
    left_ids := '{}';

    -- 1. The customers, locked without waiting, with their current value and whether the flag is on for them;
    -- each value normalised once, and its billing account looked up.
    WITH locked AS MATERIALIZED (
        SELECT c.id, c.zuora_account_id
        FROM public.customers c
        WHERE c.id = ANY (customer_ids)
        ORDER BY c.id
        FOR NO KEY UPDATE OF c SKIP LOCKED
    ),
    derived AS MATERIALIZED (
        SELECT l.id, billing_sync.normalize_zuora_account_id(l.zuora_account_id) AS account
        FROM locked l
        JOIN billing_sync.customers_in_rollout('account_data_persistence') r ON r.id = l.id
    )
    SELECT (SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}') FROM locked l),
           coalesce(array_agg(d.id ORDER BY d.id), '{}'),
           coalesce(array_agg(d.account ORDER BY d.id), '{}'),
           coalesce(array_agg((SELECT a.id FROM public.billing_accounts a WHERE a.zuora_account_id = d.account)
                              ORDER BY d.id), '{}')
    INTO locked_ids, ids, accounts, account_ids
    FROM derived d;

    -- Anything queued? (Read after the lock: a repair queued for one of these customers was committed by a
    -- write that held it, so it is visible now, and none can be queued for them until this transaction ends.)
    queued := EXISTS (SELECT 1 FROM billing_sync.sync_repairs);

    -- Id changes made under snapshot isolation first: the memberships of the old id move to the new one (a
    -- duplicate of one the new id has already goes instead), as ON UPDATE CASCADE did.
    IF queued AND EXISTS (SELECT 1 FROM billing_sync.sync_repairs q
                          WHERE q.previous_customer_id IS NOT NULL AND q.customer_id = ANY (locked_ids)) THEN
        DELETE FROM public.billing_account_memberships m
        WHERE m.id IN (
            SELECT o.id
            FROM billing_sync.sync_repairs q
            JOIN public.billing_account_memberships o ON o.customer_id = q.previous_customer_id
            WHERE q.customer_id = ANY (locked_ids)
              AND NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = o.customer_id)
              AND EXISTS (SELECT 1 FROM public.billing_account_memberships n
                          WHERE n.customer_id = q.customer_id AND n.billing_account_id = o.billing_account_id)
            FOR UPDATE OF o SKIP LOCKED
        );
        UPDATE public.billing_account_memberships m
        SET customer_id = moved.customer_id, updated_at = pg_catalog.now()
        FROM (
            -- the latest id change of the old id, when its new id is one of ours
            SELECT o.id,
                   (SELECT q.customer_id FROM billing_sync.sync_repairs q
                    WHERE q.previous_customer_id = o.customer_id ORDER BY q.id DESC LIMIT 1) AS customer_id
            FROM public.billing_account_memberships o
            WHERE o.customer_id IN (SELECT q.previous_customer_id FROM billing_sync.sync_repairs q
                                    WHERE q.customer_id = ANY (locked_ids))
              AND NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = o.customer_id)
            FOR UPDATE OF o SKIP LOCKED
        ) moved
        WHERE m.id = moved.id AND moved.customer_id = ANY (locked_ids);
    END IF;

    -- Not locked (only looked for when some are not): held by a live transaction (exists), left for later; or
    -- gone (deleted and committed), whose memberships go too (under snapshot isolation the delete trigger,
    -- billing_sync.sync_customer_removed, leaves them to this repair). Rows another repairer is deleting are
    -- skipped, not waited for.
    IF pg_catalog.cardinality(locked_ids) < pg_catalog.cardinality(customer_ids) THEN
        existing_ids := ARRAY(SELECT c.id FROM public.customers c WHERE c.id = ANY (customer_ids));
        left_ids := ARRAY(
            SELECT e.id FROM unnest(existing_ids) AS e(id)
            EXCEPT
            SELECT u.id FROM unnest(locked_ids) AS u(id)
            ORDER BY 1
        );
        gone_ids := ARRAY(
            SELECT u.id FROM unnest(customer_ids) AS u(id)
            EXCEPT
            SELECT e.id FROM unnest(existing_ids) AS e(id)
        );
        IF pg_catalog.cardinality(gone_ids) > 0 THEN
            DELETE FROM public.billing_account_memberships m
            WHERE m.id = ANY (ARRAY(
                SELECT o.id
                FROM unnest(gone_ids) AS g(id)
                CROSS JOIN LATERAL (
                    SELECT o.id FROM public.billing_account_memberships o
                    WHERE o.customer_id = g.id
                      AND NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = o.customer_id)
                      -- not while an id change still has to move them
                      AND NOT EXISTS (SELECT 1 FROM billing_sync.sync_repairs q WHERE q.previous_customer_id = o.customer_id)
                    FOR UPDATE SKIP LOCKED
                ) o
            ));
            GET DIAGNOSTICS memberships_removed = ROW_COUNT;
        END IF;
    END IF;

    -- 2. Missing accounts, claimed without waiting and created in value order (never updated).
    missing := ARRAY(
        SELECT DISTINCT x.account
        FROM unnest(accounts, account_ids) AS x(account, account_id)
        WHERE x.account IS NOT NULL AND x.account_id IS NULL
        ORDER BY 1
    );
    IF pg_catalog.cardinality(missing) > 0 THEN
        claimed := billing_sync.claim_accounts(missing);
        INSERT INTO public.billing_accounts (zuora_account_id)
        SELECT c.account FROM unnest(claimed) AS c(account) ORDER BY c.account
        ON CONFLICT (zuora_account_id) DO NOTHING;
        GET DIAGNOSTICS accounts_created = ROW_COUNT;

        -- The new accounts' ids, looked up once per account (no RETURNING: a rule on the table would make it
        -- fail). Customers whose account still does not exist (claimed elsewhere): left, untouched.
        WITH found AS MATERIALIZED (
            SELECT u.account,
                   (SELECT a.id FROM public.billing_accounts a WHERE a.zuora_account_id = u.account) AS account_id
            FROM unnest(missing) AS u(account)
        ),
        resolved AS MATERIALIZED (
            SELECT x.id, x.account, coalesce(x.account_id, f.account_id) AS account_id
            FROM unnest(ids, accounts, account_ids) AS x(id, account, account_id)
            LEFT JOIN found f ON f.account = x.account AND x.account_id IS NULL
        )
        SELECT coalesce(array_agg(r.id ORDER BY r.id) FILTER (WHERE r.account IS NULL OR r.account_id IS NOT NULL), '{}'),
               coalesce(array_agg(r.account ORDER BY r.id) FILTER (WHERE r.account IS NULL OR r.account_id IS NOT NULL), '{}'),
               coalesce(array_agg(r.account_id ORDER BY r.id) FILTER (WHERE r.account IS NULL OR r.account_id IS NOT NULL), '{}'),
               left_ids || coalesce(array_agg(r.id ORDER BY r.id) FILTER (WHERE r.account IS NOT NULL AND r.account_id IS NULL), '{}')
        INTO ids, accounts, account_ids, left_ids
        FROM resolved r;
    END IF;

    -- 3. Their memberships, read after the lock (in READ COMMITTED this statement sees whatever the writes that
    -- held these customers before did to them): every membership that is not the derived one goes (stale,
    -- orphaned, or all when there is no account), and the derived one is added where it is missing.
    WITH state AS MATERIALIZED (
        SELECT x.id, x.account_id, m.member, m.stale
        FROM unnest(ids, account_ids) AS x(id, account_id)
        CROSS JOIN LATERAL (
            SELECT coalesce(bool_or(o.billing_account_id = x.account_id), false) AS member,
                   array_agg(o.id) FILTER (WHERE o.billing_account_id IS DISTINCT FROM x.account_id) AS stale
            FROM public.billing_account_memberships o
            WHERE o.customer_id = x.id
        ) m
    )
    SELECT (SELECT coalesce(array_agg(u.id ORDER BY u.id), '{}') FROM state t CROSS JOIN LATERAL unnest(t.stale) AS u(id)),
           coalesce(array_agg(s.id ORDER BY s.id) FILTER (WHERE s.account_id IS NOT NULL AND NOT s.member), '{}'),
           coalesce(array_agg(s.account_id ORDER BY s.id) FILTER (WHERE s.account_id IS NOT NULL AND NOT s.member), '{}')
    INTO stale_ids, add_ids, add_account_ids
    FROM state s;

    IF pg_catalog.cardinality(stale_ids) > 0 THEN
        DELETE FROM public.billing_account_memberships m WHERE m.id = ANY (stale_ids);
        GET DIAGNOSTICS removed = ROW_COUNT;
        memberships_removed := memberships_removed + removed;
    END IF;
    IF pg_catalog.cardinality(add_ids) > 0 THEN
        INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
        SELECT l.account_id, l.id
        FROM unnest(add_ids, add_account_ids) AS l(id, account_id)
        ORDER BY l.id
        ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
        GET DIAGNOSTICS memberships_added = ROW_COUNT;
    END IF;
    synced := pg_catalog.cardinality(ids);

    -- 4. Done: every customer asked for but those left. Their queued repairs go (looked up per customer),
    -- skipping rows another repairer has locked (it is deleting them too).
    IF pg_catalog.cardinality(left_ids) = 0 THEN
        done_ids := customer_ids;
    ELSE
        done_ids := ARRAY(
            SELECT u.id FROM unnest(customer_ids) AS u(id)
            EXCEPT
            SELECT l.id FROM unnest(left_ids) AS l(id)
        );
    END IF;
    IF NOT queued THEN
        RETURN;
    END IF;
    DELETE FROM billing_sync.sync_repairs q
    WHERE q.id = ANY (ARRAY(
        SELECT s.id
        FROM unnest(done_ids) AS u(id)
        CROSS JOIN LATERAL (
            SELECT s.id FROM billing_sync.sync_repairs s WHERE s.customer_id = u.id FOR UPDATE SKIP LOCKED
        ) s
    ));
END;
$function$;
