-- Adopting an existing public.customers (the portal's own table, created outside these migrations,
-- with its data): revision 0001 keeps it as it is and installs the sync around it, if it has what the
-- sync reads. Checked first, before anything is created, so that a table that does not fit fails the
-- revision (nothing is installed) with a message that says what to change, instead of an obscure
-- error from a later statement. A new install has no customers table yet: nothing to check.
-- The sync needs:
--   an ordinary or partitioned table;
--   id bigint, unique on its own (primary key, unique constraint or unique index, not deferrable,
--   not partial): billing_account_memberships.customer_id references it;
--   zuora_account_id text or character varying: the value the sync derives the account from.
-- Only the catalogs are read: no lock is taken on the table.
DO $check$
DECLARE
    relation oid := pg_catalog.to_regclass('public.customers');
    kind "char";
    id_column smallint;
    id_type regtype;
    account_type regtype;
BEGIN
    IF relation IS NULL THEN
        RETURN;
    END IF;

    SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = relation;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'public.customers cannot be adopted: it is not a table (pg_class.relkind %)', kind
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    SELECT a.attnum, a.atttypid INTO id_column, id_type
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = relation AND a.attname = 'id' AND a.attnum > 0 AND NOT a.attisdropped;
    IF id_column IS NULL OR id_type <> 'pg_catalog.int8'::pg_catalog.regtype THEN
        RAISE EXCEPTION 'public.customers cannot be adopted: the sync needs a column id of type bigint, it has %',
                coalesce('id ' || id_type::text, 'no column id')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Changing the type of id rewrites the table: plan it on its own, then run the upgrade again.';
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_index i
        WHERE i.indrelid = relation AND i.indisunique AND i.indimmediate AND i.indisvalid
          AND i.indpred IS NULL AND i.indexprs IS NULL
          AND i.indnkeyatts = 1 AND i.indkey[0] = id_column
    ) THEN
        RAISE EXCEPTION 'public.customers cannot be adopted: id is not unique on its own (no primary key or unique index on id)'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CREATE UNIQUE INDEX CONCURRENTLY customers_id_key ON public.customers (id); then ALTER TABLE public.customers ADD CONSTRAINT customers_pkey PRIMARY KEY USING INDEX customers_id_key; then run the upgrade again.';
    END IF;

    SELECT a.atttypid INTO account_type
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = relation AND a.attname = 'zuora_account_id' AND a.attnum > 0 AND NOT a.attisdropped;
    IF account_type IS NULL THEN
        RAISE EXCEPTION 'public.customers cannot be adopted: the sync needs a column zuora_account_id of type text or character varying, it has no column zuora_account_id'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Adding it rewrites nothing but takes ACCESS EXCLUSIVE for an instant: SET lock_timeout = ''1s''; ALTER TABLE public.customers ADD COLUMN zuora_account_id text; (again if it times out), then run the upgrade again.';
    END IF;
    IF account_type NOT IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype) THEN
        RAISE EXCEPTION 'public.customers cannot be adopted: the sync needs a column zuora_account_id of type text or character varying, it has zuora_account_id %',
                account_type
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Changing its type rewrites the table: plan it on its own, then run the upgrade again.';
    END IF;
END
$check$;
