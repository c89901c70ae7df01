-- The sync does not support a partitioned public.customers (issue 11): checked before anything is installed,
-- by revision 0001 (adoption) and by revision 0007 (a database that adopted one under 0001-0006).
-- Why not: a statement trigger on a partitioned table does not fire for an INSERT INTO one of its
-- partitions, and an UPDATE that moves a row to another partition runs as DELETE + INSERT and fires no AFTER
-- UPDATE row trigger (field notes 8): those writes would silently stay unsynced. Refusing is the honest answer
-- until every path is synced and tested. This file is a precondition, not an object: it installs nothing, so
-- running it from 0001 changes nothing that revision installs on a table it accepts.
-- Only the catalogs are read: no lock is taken on the table.
DO $check$
DECLARE
    relation oid := pg_catalog.to_regclass('public.customers');
BEGIN
    IF relation IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = relation AND c.relkind = 'p'
    ) OR EXISTS (
        SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = relation OR i.inhparent = relation
    ) THEN
        RAISE EXCEPTION 'public.customers cannot be synced: it is partitioned (or inherits or is inherited), and billing-sync does not sync writes to partitions or rows moved between them'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Keep public.customers a plain table (billing-sync supports an ordinary table only), or stay on the revision you have; see README "Adopting an existing customers table".';
    END IF;
END;
$check$;
