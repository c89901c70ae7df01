-- Is the sync switched on at all (the kill switch of account_data_persistence)? The WHEN clause of the
-- customers sync triggers asks it for the first row of each statement that has work (the marker of
-- billing_sync_customer_insert/update lets the other rows through without asking), so that a statement
-- written while the flag is off never enters PL/pgSQL. The gates (everyone, actors, percentage) are
-- applied per customer by billing_sync.sync_customers.
--
-- Called from a trigger's WHEN, so it runs for the role writing customers, which holds no right on the
-- flag tables: SECURITY DEFINER (it reads as the owner), and EXECUTE must be granted to every role that
-- writes customers (the revision grants it to PUBLIC: it tells only whether the kill switch is on;
-- without it, such a write would fail with "permission denied for function sync_due").
-- No SET clause: its SQL-standard body (BEGIN ATOMIC) is parsed when it is created, so no name in it is
-- looked up on the caller's search_path, and a SET would cost a GUC save/restore on every call
-- (bench/flag_cost.py). It writes nothing.
CREATE OR REPLACE FUNCTION billing_sync.sync_due()
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce((SELECT f.enabled FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence'), false);
END;
