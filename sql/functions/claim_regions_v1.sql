-- billing_sync.claim_regions(): how many claim regions there are, which is also a transaction's budget of single
-- claims (billing_sync.claim_account): a quarter of max_locks_per_transaction (16 at the default of 64).
--
-- Why (revision 0008, issue 11): the shared lock table holds max_locks_per_transaction x (max_connections +
-- max_prepared_transactions) locks for all sessions together, and a try-lock that finds it full fails with
-- "out of shared memory", which would fail the customer write. With R regions a transaction's claims hold at
-- most R account keys (its budget of single claims) plus R region objects (shared or exclusive: one object
-- per region), so the sync never takes more than half of its transaction's share of the table, whatever it
-- creates, and leaves the other half to the application. Revision 0007's 256 regions and 256 claims allowed
-- 512, eight times a transaction's share at the default: a dozen open imports could fill the table.
-- max_locks_per_transaction only changes with a server restart, so every transaction sees the same regions.
CREATE OR REPLACE FUNCTION billing_sync.claim_regions()
RETURNS integer
LANGUAGE sql
STABLE
PARALLEL SAFE
RETURN GREATEST(pg_catalog.current_setting('max_locks_per_transaction')::integer OPERATOR(pg_catalog./) 4, 1);
