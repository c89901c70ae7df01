-- The advisory lock that guards the creation of billing account ACCOUNT, as the second key of
-- pg_advisory_xact_lock(7300001, key): one of 64 buckets of hashtext(account).
-- Buckets, not one lock per account: a bulk statement creating 200,000 new accounts would
-- otherwise hold 200,000 locks until commit and exhaust the shared lock table ("out of shared
-- memory"), failing the customer write. With 64 buckets a transaction holds at most 64; two
-- creators of different new accounts in one bucket only see each other as busy (see
-- billing_sync.create_billing_account for what busy means).
-- Plain SQL without SET so that the planner inlines it; names qualified against hijacking.
CREATE OR REPLACE FUNCTION billing_sync.account_lock_key(account text)
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
RETURN pg_catalog.hashtext(account) OPERATOR(pg_catalog.&) 63;
