-- The role of the people who roll the flag out (sync-admin flag ...): changes flags (the kill
-- switch and the gates: UPDATE of feature_flags, INSERT/DELETE of feature_flag_actors) and reads
-- their audit log, which it can neither alter nor delete: no one but the owner of
-- feature_flag_events can. NOLOGIN: people log in with their own roles, made members of this one:
--   GRANT billing_sync_admin TO alice;
-- Cluster-wide and created only when missing, like billing_sync_app (see there).
DO $role$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'billing_sync_admin') THEN
        CREATE ROLE billing_sync_admin NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    RAISE NOTICE 'billing_sync_admin was created meanwhile by another session: kept';
END
$role$;
