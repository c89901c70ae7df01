-- The application's role: reads and writes public.customers (the sync follows through the
-- SECURITY DEFINER trigger functions) and reads the billing tables; it cannot write billing_sync.*
-- nor the billing tables, and cannot change a flag. NOLOGIN: the application logs in with its own
-- role, made a member of this one:  GRANT billing_sync_app TO portal;
-- Roles belong to the cluster, not to a database: another database of the cluster, or a DBA who
-- made it beforehand (the way to run the migrations as a user without CREATEROLE), may already have
-- created it, so it is created only when missing, and a downgrade never drops it. The EXCEPTION
-- clause covers a migration of another database creating it at the same moment (once per migration,
-- not per row: no cost that matters).
DO $role$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'billing_sync_app') THEN
        CREATE ROLE billing_sync_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    RAISE NOTICE 'billing_sync_app was created meanwhile by another session: kept';
END
$role$;
