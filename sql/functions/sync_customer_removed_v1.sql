-- Row trigger function of billing_sync_customer_delete and billing_sync_customer_rekey on public.customers
-- (revision 0007, issue 11): memberships follow their customer, as the foreign key's ON DELETE CASCADE and ON
-- UPDATE CASCADE did before, whatever the flag says.
--
-- Why not the foreign key any more: under REPEATABLE READ or SERIALIZABLE, PostgreSQL's cascade checks the rows
-- it deletes against the transaction's snapshot, so a customer DELETE (or id change) whose memberships a
-- repair or a backfill batch wrote after that snapshot failed with "could not serialize access due to
-- concurrent update": a customer write failing because of the sync. So:
-- * READ COMMITTED: the memberships of the old id are deleted (DELETE) or moved to the new id (UPDATE OF id),
--   at once, in the customer write's transaction. Only this customer's rows: any other writer of them holds
--   this customer's row, which this write holds now, so nothing here waits.
-- * REPEATABLE READ / SERIALIZABLE: nothing is written from the old snapshot; the old id (and the new one) are
--   queued in billing_sync.sync_repairs (snapshot_isolation), and the repair deletes the memberships of a
--   customer that is gone, and syncs one that exists, right after this transaction commits.
-- Rules as for the sync: no EXCEPTION block, no savepoint; SECURITY DEFINER, pinned search_path, qualified names.
CREATE OR REPLACE FUNCTION billing_sync.sync_customer_removed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        -- The old id (gone: the repair deletes what is left of it) and, for an id change, the new one with the
        -- old one beside it (the repair moves the memberships, then syncs the customer as it is then).
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id, previous_customer_id)
        SELECT u.id, 'snapshot_isolation', pg_catalog.txid_current(), u.previous
        FROM (VALUES (OLD.id, NULL::bigint), (CASE WHEN TG_OP = 'UPDATE' THEN NEW.id END, OLD.id)) AS u(id, previous)
        WHERE u.id IS NOT NULL;
        PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM public.billing_account_memberships m WHERE m.customer_id = OLD.id;
    ELSE
        -- Memberships still under the new id belong to a customer that is gone (a delete under snapshot isolation
        -- left them to the repair): they go first, so that the move cannot meet them on the unique key.
        DELETE FROM public.billing_account_memberships m WHERE m.customer_id = NEW.id;
        UPDATE public.billing_account_memberships m
        SET customer_id = NEW.id, updated_at = pg_catalog.now()
        WHERE m.customer_id = OLD.id;
        -- A repair queued for the old id is the new id's now.
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        SELECT NEW.id, q.reason, pg_catalog.txid_current()
        FROM billing_sync.sync_repairs q
        WHERE q.customer_id = OLD.id
        LIMIT 1;
    END IF;
    RETURN NULL;
END;
$function$;
