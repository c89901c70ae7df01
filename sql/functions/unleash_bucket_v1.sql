-- billing_sync.unleash_bucket: Unleash gradualRollout bucket (1..100) of a customer for a flag
-- (stickiness = customer id, groupId = flag name):
--   murmur3_32(utf8("<flag_name>:<customer_id>"), 0) % 100 + 1
-- A customer is inside a p% rollout when unleash_bucket(flag, id) <= p. Must match
-- sync_admin.bucketing.unleash_bucket exactly.
-- PL/pgSQL rather than SQL: convert_to() is only STABLE, so an IMMUTABLE SQL function could not be
-- inlined anyway, and a non-inlined SQL function call measured ~1 us slower than PL/pgSQL.
-- No `SET search_path` clause (a GUC save/restore on every call, in a per-row trigger path); every
-- function, operator and type is schema-qualified instead, so the caller's search_path cannot hijack it.
CREATE OR REPLACE FUNCTION billing_sync.unleash_bucket(flag_name text, customer_id bigint)
RETURNS integer
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
BEGIN
    RETURN ((billing_sync.murmur3_32(
                 pg_catalog.convert_to(
                     ((flag_name OPERATOR(pg_catalog.||) ':')
                      OPERATOR(pg_catalog.||) customer_id::pg_catalog.text),
                     'UTF8'),
                 0)
             OPERATOR(pg_catalog.%) 100) OPERATOR(pg_catalog.+) 1)::pg_catalog.int4;
END
$fn$;
