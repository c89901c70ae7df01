-- billing_sync.stamp_definition_hash(catalog, object_id): store the hash of a function's or a
-- trigger's definition in its comment ("sync-admin:definition-sha256-v1:<hex>"), as django-pgtrigger
-- does. `sync-admin doctor` recomputes the hash from the live definition and reports any difference:
-- a function replaced by hand (CREATE OR REPLACE keeps the comment but changes the hash), a trigger
-- dropped and recreated (the comment is gone), an attribute changed with ALTER FUNCTION.
-- Revisions stamp what they install: 0004 stamps every function of billing_sync and every trigger of
-- the sync; a later revision that installs or replaces an object calls this for it, e.g.
--   SELECT billing_sync.stamp_definition_hash('pg_proc', 'billing_sync.f(text)'::regprocedure);
--
-- What is hashed (canonical form v1; sync_admin/definitions.py computes the same text and must stay
-- identical): what PostgreSQL stores as the user wrote it, or deparses in a stable way, with
-- search_path pinned to pg_catalog so that every other name is printed schema-qualified:
--   function: signature, result type, language, SECURITY DEFINER, volatility, strictness,
--             parallel safety, leakproofness, the SET options (proconfig), and the body: prosrc as
--             written, or the deparsed BEGIN ATOMIC body. Not pg_get_functiondef's whole text: its
--             layout is not a stable interface, and it would add COST/ROWS planner estimates.
--   trigger:  pg_get_triggerdef (name, timing, events, columns, level, WHEN, function, table).
-- Not hashed: OIDs (they change with a dump and restore), owners and privileges, comments, and a
-- trigger's enabled state (doctor checks that separately).
-- No SECURITY DEFINER: COMMENT needs the caller to own the object, and so it stays.
CREATE OR REPLACE FUNCTION billing_sync.stamp_definition_hash(catalog regclass, object_id oid)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    canonical text;
    target text;
    stamp text;
BEGIN
    IF catalog = 'pg_catalog.pg_proc'::regclass THEN
        SELECT pg_catalog.concat_ws(E'\n',
                   'function ' || p.oid::regprocedure::text,
                   'returns ' || pg_catalog.pg_get_function_result(p.oid),
                   'language ' || l.lanname,
                   'security definer ' || p.prosecdef::text,
                   'volatility ' || p.provolatile::text,
                   'strict ' || p.proisstrict::text,
                   'parallel ' || p.proparallel::text,
                   'leakproof ' || p.proleakproof::text,
                   'config ' || coalesce(pg_catalog.array_to_string(p.proconfig, ' | '), ''),
                   'body',
                   CASE WHEN p.prosqlbody IS NULL THEN p.prosrc ELSE pg_catalog.pg_get_function_sqlbody(p.oid) END),
               pg_catalog.format('FUNCTION %s', p.oid::regprocedure)
        INTO canonical, target
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE p.oid = object_id;
    ELSIF catalog = 'pg_catalog.pg_trigger'::regclass THEN
        SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid, false),
               pg_catalog.format('TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass)
        INTO canonical, target
        FROM pg_catalog.pg_trigger t
        WHERE t.oid = object_id;
    ELSE
        RAISE EXCEPTION 'stamp_definition_hash: catalog must be pg_proc or pg_trigger, not %', catalog
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF canonical IS NULL THEN
        RAISE EXCEPTION 'stamp_definition_hash: no object % in %', object_id, catalog
            USING ERRCODE = 'undefined_object';
    END IF;
    stamp := 'sync-admin:definition-sha256-v1:'
             || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(canonical, 'UTF8')), 'hex');
    EXECUTE pg_catalog.format('COMMENT ON %s IS %L', target, stamp);
    RETURN stamp;
END;
$function$;
