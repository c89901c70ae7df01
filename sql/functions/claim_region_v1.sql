-- billing_sync.claim_region(account): the claim region of billing account ACCOUNT, 0 to claim_regions() - 1 (the
-- key of its lock in class 7300004). Two accounts share a region far more often than a key (hashtext): a region
-- is only ever taken exclusively by a transaction past its budget of single claims (billing_sync.claim_account).
CREATE OR REPLACE FUNCTION billing_sync.claim_region(account text)
RETURNS integer
LANGUAGE sql
STABLE
PARALLEL SAFE
RETURN (pg_catalog.hashtext(account) OPERATOR(pg_catalog.&) 2147483647)
       OPERATOR(pg_catalog.%) billing_sync.claim_regions();
