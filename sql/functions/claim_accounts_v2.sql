-- billing_sync.claim_accounts(accounts): the accounts of ACCOUNTS this transaction may create without waiting
-- for another transaction (see billing_sync.claim_account for the lock hierarchy and why it only tries).
-- Used by the set-based paths (a multi-row INSERT, the repair and the backfill) before they insert the
-- missing billing accounts; the accounts not returned are contended and left to the repair.
-- * While the transaction's single claims stay within the budget of billing_sync.claim_account
--   (claim_regions(), counted in billing_sync.claims): one single claim each (shared region + exclusive account
--   key), so a small import blocks no other account than its own.
-- * Past it: the regions the accounts fall in, exclusively, in region order: at most claim_regions() locks
--   whatever the number of accounts (one statement creating 100,000 new accounts stays within its share of
--   the shared lock table; billing_sync.claim_regions says why that bound).
-- v2 (revision 0008): the regions and the budget follow max_locks_per_transaction (v1: 256 each).
--   Single claims of other transactions in those regions fail (their customers are repaired once this
--   transaction ends) while this one is open.
-- Never waits; NULL or empty input gives an empty array.
CREATE OR REPLACE FUNCTION billing_sync.claim_accounts(accounts text[])
RETURNS text[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    wanted text[];
    counted text := pg_catalog.current_setting('billing_sync.claims', true);
    claims integer := 0;
BEGIN
    IF counted OPERATOR(pg_catalog.~) '^[0-9]{1,9}$' THEN
        claims := counted::integer;
    END IF;
    SELECT coalesce(array_agg(DISTINCT u.account ORDER BY u.account), '{}')
    INTO wanted
    FROM unnest(accounts) AS u(account)
    WHERE u.account IS NOT NULL;

    IF claims + pg_catalog.cardinality(wanted) <= billing_sync.claim_regions() THEN
        RETURN ARRAY(SELECT w.account FROM unnest(wanted) AS w(account)
                     WHERE billing_sync.claim_account(w.account) ORDER BY w.account);
    END IF;
    -- MATERIALIZED: each region is tried exactly once, whatever plan the join gets.
    RETURN ARRAY(
        WITH held AS MATERIALIZED (
            SELECT r.region
            FROM (SELECT DISTINCT billing_sync.claim_region(x.account) AS region
                  FROM unnest(wanted) AS x(account) ORDER BY 1) r
            WHERE pg_catalog.pg_try_advisory_xact_lock(7300004, r.region)
        )
        SELECT w.account
        FROM unnest(wanted) AS w(account)
        JOIN held ON held.region = billing_sync.claim_region(w.account)
        ORDER BY w.account
    );
END;
$function$;
