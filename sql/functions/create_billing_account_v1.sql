-- Create the billing account ACCOUNT (or find it) for the sync, without ever taking part in a
-- deadlock; its id, or NULL when another transaction is creating it and waiting is not safe.
--
-- Waiting on another transaction's uncommitted unique key is how two customer writes that
-- take two new accounts in opposite order deadlock (field notes 3). So every creator first
-- takes a transaction-level advisory lock on the account (7300001, account_lock_key:
-- one of 64 buckets; re-entrant, held until commit), and:
-- * lock free: insert with ON CONFLICT DO NOTHING; no other creator is in flight, so the
--   insert cannot wait;
-- * lock busy, and this transaction holds no account lock of its own: wait for it. A
--   waiter holds nothing another creator could want, so no cycle runs through these
--   locks; afterwards the creator has committed (the lookup finds the row) or rolled back
--   (we create it);
-- * lock busy while holding one: do not wait; return NULL and let the caller skip the
--   membership (the next write or the backfill brings it).
-- Called only from the SECURITY DEFINER sync functions; not granted to anyone.
CREATE OR REPLACE FUNCTION billing_sync.create_billing_account(account text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    lock_key integer := billing_sync.account_lock_key(account);
    account_id bigint;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(7300001, lock_key) THEN
        IF EXISTS (
            SELECT 1 FROM pg_catalog.pg_locks l
            WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'advisory'
              AND l.classid = 7300001 AND l.objsubid = 2 AND l.granted
        ) THEN
            RETURN NULL;
        END IF;
        PERFORM pg_catalog.pg_advisory_xact_lock(7300001, lock_key);
        SELECT a.id INTO account_id FROM public.billing_accounts a WHERE a.zuora_account_id = account;
        IF account_id IS NOT NULL THEN
            RETURN account_id;
        END IF;
    END IF;

    INSERT INTO public.billing_accounts (zuora_account_id) VALUES (account)
    ON CONFLICT (zuora_account_id) DO NOTHING
    RETURNING id INTO account_id;
    IF account_id IS NULL THEN
        -- Committed by another transaction between the caller's lookup and our lock:
        -- this new statement's snapshot sees it.
        SELECT a.id INTO account_id FROM public.billing_accounts a WHERE a.zuora_account_id = account;
    END IF;
    RETURN account_id;
END;
$function$;
