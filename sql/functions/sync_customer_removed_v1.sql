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
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        SELECT u.id, 'snapshot_isolation', pg_catalog.txid_current()
        FROM (VALUES (OLD.id), (CASE WHEN TG_OP = 'UPDATE' THEN NEW.id END)) AS u(id)
        WHERE u.id IS NOT NULL;
        PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM public.billing_account_memberships m WHERE m.customer_id = OLD.id;
    ELSE
        UPDATE public.billing_account_memberships m
        SET customer_id = NEW.id, updated_at = pg_catalog.now()
        WHERE m.customer_id = OLD.id;
    END IF;
    RETURN NULL;
END;
$function$;
