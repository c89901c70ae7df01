-- Statement-level trigger function on public.customers: one pg_notify per statement that recorded
-- skips, on the channel billing_sync_skips (README "Monitoring"). The row trigger function
-- (sync_customer_account v3) leaves the id of the statement's first event in the transaction-local
-- setting billing_sync.pending_skip_event; AFTER STATEMENT triggers fire after the statement's
-- AFTER ROW triggers, so this sees it, sends it, and clears it for the next statement.
-- Payload: {"transaction_id": <txid of the write>, "first_event_id": <id>}; the statement's events
-- are those of that transaction from that id on (until the next notification's first id).
-- The payload differs per statement, so PostgreSQL's folding of identical notifications within a
-- transaction never merges two statements; it is delivered to listeners when the transaction
-- commits, and never if it rolls back (with its events).
-- Fires for every INSERT and every UPDATE OF zuora_account_id statement, so its fast path is one
-- setting read. It writes no table, so it runs as the caller (no SECURITY DEFINER); its search_path
-- is pinned all the same. A setting that is not a number (a client can set it) is ignored rather
-- than cast: nothing here may fail a customer write.
CREATE OR REPLACE FUNCTION billing_sync.notify_sync_skips()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    first_event text := pg_catalog.current_setting('billing_sync.pending_skip_event', true);
BEGIN
    IF first_event IS NULL OR first_event !~ '^[0-9]{1,18}$' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_catalog.set_config('billing_sync.pending_skip_event', '', true);
    PERFORM pg_catalog.pg_notify(
        'billing_sync_skips',
        pg_catalog.json_build_object('transaction_id', pg_catalog.txid_current(), 'first_event_id', first_event::bigint)::text
    );
    RETURN NULL;
END;
$function$;
