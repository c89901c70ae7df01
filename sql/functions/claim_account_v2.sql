-- billing_sync.claim_account(account): may this transaction create billing account ACCOUNT without ever
-- waiting for another transaction? True: it holds the claim until it ends, and no other transaction can be
-- inserting ACCOUNT (every creator claims first), so its INSERT ... ON CONFLICT DO NOTHING cannot wait on an
-- uncommitted row. False: another transaction holds a claim that covers ACCOUNT (it is creating it, or a
-- bulk statement's region); the caller skips the membership, records account_contended, and the repair
-- (`sync-admin heal`, the backfill) brings it once that transaction has ended.
--
-- Why only try-locks (revision 0007, issue 11; field notes 8): a customer write runs inside the
-- application's transaction, which may hold row locks the sync knows nothing about. Any wait the sync adds
-- can close a deadlock cycle that would not exist without it, or stall the write behind an unrelated
-- transaction (an open import, a role holding advisory keys). A try never waits, so no cycle can run
-- through these locks and no write waits on them.
--
-- The lock hierarchy (advisory, transaction level, released at commit or rollback):
-- * region (class 7300004, billing_sync.claim_region: one of claim_regions(), a quarter of
--   max_locks_per_transaction), shared by single claims and held exclusively by a transaction past its budget
--   of single claims (a bulk statement, billing_sync.claim_accounts), so that it holds at most that many region
--   locks whatever the number of its accounts;
-- * account (class 7300002, hashtext(account)): exclusive, one per single claim. Two accounts share a key
--   only on a 32-bit hash collision, so unrelated accounts do not contend (no false sharing).
-- A transaction that has made claim_regions() single claims (a row-by-row UPDATE of many customers to new
-- accounts) takes the region exclusively instead: at most claim_regions() account keys plus as many regions a
-- transaction, half of max_locks_per_transaction (billing_sync.claim_regions says why that bound).
-- v2 (revision 0008): the regions and the budget follow max_locks_per_transaction (v1: 256 each).
-- The count lives in the transaction-local setting billing_sync.claims; the application can set it too,
-- so it is parsed defensively (anything but 1-9 digits counts as 0), and a wrong value can only change
-- which of the two locks is tried, never make the write fail. (An application that resets it within its own
-- transaction can take more single claims than the budget in that transaction: its own choice, as with any
-- locks it takes itself.)
-- Called only from the SECURITY DEFINER sync functions; not granted to anyone.
CREATE OR REPLACE FUNCTION billing_sync.claim_account(account text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    budget integer := billing_sync.claim_regions();
    region integer := billing_sync.claim_region(account);
    counted text := pg_catalog.current_setting('billing_sync.claims', true);
    claims integer := 0;
    ignored text;
BEGIN
    IF counted OPERATOR(pg_catalog.~) '^[0-9]{1,9}$' THEN
        claims := counted::integer;
    END IF;
    IF claims >= budget THEN
        -- Over budget: the whole region, exclusively (covers every account in it for this transaction).
        RETURN pg_catalog.pg_try_advisory_xact_lock(7300004, region);
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock_shared(7300004, region) THEN
        RETURN false;  -- a bulk statement of another transaction holds the region
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(7300002, pg_catalog.hashtext(account)) THEN
        RETURN false;  -- another transaction is creating this account
    END IF;
    ignored := pg_catalog.set_config('billing_sync.claims', (claims + 1)::text, true);
    RETURN true;
END;
$function$;
