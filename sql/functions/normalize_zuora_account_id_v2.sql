-- The billing account a raw customers.zuora_account_id value stands for, or NULL.
-- Rule: trim surrounding ASCII white space (space, tab, LF, CR, VT, FF); what remains
-- must be 1 to 64 characters of [A-Za-z0-9_.-] (Zuora ids are 32 hex digits, account
-- numbers look like A00001234). Empty means "no account"; anything else (inner spaces,
-- control characters, other Unicode, longer values) is not an account and is skipped.
-- A plain SQL function without SET or SECURITY DEFINER so that the planner inlines it;
-- every name is qualified so that nothing on a caller's search_path can shadow it.
-- Vertical tab is written \x0b: PostgreSQL before 18 reads E'\v' as the letter v.
-- v2 (revision 0008, issue 11): the same rule, checked as "at most 64 characters" and "one or more of the
-- class". v1's bounded repetition {1,64} compiles to 64 copies of the class, and PostgreSQL's regex engine took
-- about 4 us a value for it against under 1 us now; it runs once a synced row, and over every customer in
-- verify and the backfill. Every character the class accepts is one byte, so length() counts them.
CREATE OR REPLACE FUNCTION billing_sync.normalize_zuora_account_id(raw text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
RETURN CASE
    WHEN pg_catalog.length(pg_catalog.btrim(raw, E' \t\n\r\x0b\f')) OPERATOR(pg_catalog.<=) 64
         AND pg_catalog.btrim(raw, E' \t\n\r\x0b\f') OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.-]+$'
    THEN pg_catalog.btrim(raw, E' \t\n\r\x0b\f')
END;
