-- Statement trigger function on public.customers (replaces the row function sync_customer_account v3):
-- once per INSERT or UPDATE statement that wrote a zuora_account_id while the flag was on, make the
-- memberships of every customer it synced exactly the one derived from the value, in one set-based pass
-- over the statement's transition tables (new_customers; old_customers for UPDATE).
--
-- Which rows: the same as the row triggers of v3. INSERT: rows with a value. UPDATE: rows whose raw value
-- changed (an id changed by the same statement counts as changed: it has no old row to compare with).
-- Of those, the customers the flag is on for (kill switch, everyone, actor, percentage: the decision of
-- billing_sync.flag_enabled_for, evaluated set-based; the flag row is read once).
--
-- When it runs: the triggers' WHEN asks for a marker that the row triggers' WHEN set in this
-- transaction (a row with a value was inserted, or a value changed) and for the kill switch. So an UPDATE
-- of email, or any write while the flag is off, never enters PL/pgSQL. The marker is cleared here.
--
-- What it writes, as v3: missing billing accounts through billing_sync.create_billing_account (advisory
-- try-lock, in value order; never updated), stale memberships deleted (UPDATE), derived ones inserted
-- where missing (ON CONFLICT DO NOTHING, looked for first: no id is drawn for a no-op), one
-- billing_sync.sync_events row per skipped customer write (reasons as in sql/tables/sync_events_v1.sql),
-- and one pg_notify on billing_sync_skips per statement that recorded skips, with the payload of
-- billing_sync.notify_sync_skips ({"transaction_id", "first_event_id"}).
--
-- Rules (field notes 1 and 3): no EXCEPTION block and no savepoint (a statement consumes no transaction
-- id beyond its own); every case is an IF or a WHERE; billing_accounts rows are only inserted; SECURITY
-- DEFINER with a pinned search_path and qualified names. The work is one statement (data-modifying CTEs);
-- a second, rare one only when a membership insert wrote nothing (a concurrent writer, or a rule).
CREATE OR REPLACE FUNCTION billing_sync.sync_customers()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    cleared text;
    unwritten bigint[];
    first_event bigint;
    unwritten_event bigint;
BEGIN
    cleared := pg_catalog.set_config('billing_sync.customers_written', '', true);

    IF TG_OP = 'INSERT' THEN
        WITH flag AS MATERIALIZED (
            SELECT f.name, f.everyone, f.percentage
            FROM billing_sync.feature_flags f
            WHERE f.name = 'account_data_persistence' AND f.enabled
        ),
        synced AS MATERIALIZED (
            SELECT n.id, n.zuora_account_id AS raw, billing_sync.normalize_zuora_account_id(n.zuora_account_id) AS account
            FROM new_customers n CROSS JOIN flag f
            WHERE n.zuora_account_id IS NOT NULL
              AND (f.everyone
                   OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_actors a
                              WHERE a.flag_name = f.name AND a.customer_id = n.id)
                   OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, n.id) <= f.percentage))
        ),
        found AS MATERIALIZED (
            SELECT s.id, s.raw, s.account, a.id AS account_id
            FROM synced s LEFT JOIN public.billing_accounts a ON a.zuora_account_id = s.account
        ),
        created AS MATERIALIZED (
            SELECT m.account, billing_sync.create_billing_account(m.account) AS account_id
            FROM (SELECT DISTINCT f.account FROM found f
                  WHERE f.account IS NOT NULL AND f.account_id IS NULL ORDER BY f.account) m
        ),
        resolved AS MATERIALIZED (
            SELECT f.id, f.raw, f.account, coalesce(f.account_id, c.account_id) AS account_id
            FROM found f LEFT JOIN created c ON f.account_id IS NULL AND c.account = f.account
        ),
        to_add AS MATERIALIZED (
            SELECT r.account_id, r.id FROM resolved r WHERE r.account_id IS NOT NULL
        ),
        added AS (
            INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
            SELECT t.account_id, t.id FROM to_add t
            ON CONFLICT (customer_id, billing_account_id) DO NOTHING
            RETURNING customer_id
        ),
        events AS (
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            SELECT r.id, 'INSERT',
                   CASE WHEN r.account IS NULL THEN 'not_an_account'
                        WHEN pg_catalog.pg_try_advisory_xact_lock(7300001, billing_sync.account_lock_key(r.account))
                        THEN 'account_unresolved'
                        ELSE 'account_contended' END,
                   pg_catalog."left"(r.raw, 200), pg_catalog.length(r.raw), pg_catalog.txid_current()
            FROM resolved r
            WHERE r.account_id IS NULL AND (r.account IS NOT NULL OR pg_catalog.btrim(r.raw, E' \t\n\r\v\f') <> '')
            ORDER BY r.id
            RETURNING id
        )
        -- The customers whose membership insert wrote nothing (computed only when there are any).
        SELECT CASE WHEN (SELECT count(*) FROM added) < (SELECT count(*) FROM to_add)
                    THEN ARRAY(SELECT t.id FROM to_add t EXCEPT ALL SELECT a.customer_id FROM added a) END,
               (SELECT min(e.id) FROM events e)
        INTO unwritten, first_event;
    ELSE
        WITH flag AS MATERIALIZED (
            SELECT f.name, f.everyone, f.percentage
            FROM billing_sync.feature_flags f
            WHERE f.name = 'account_data_persistence' AND f.enabled
        ),
        synced AS MATERIALIZED (
            SELECT n.id, n.zuora_account_id AS raw, billing_sync.normalize_zuora_account_id(n.zuora_account_id) AS account
            FROM new_customers n CROSS JOIN flag f
            WHERE NOT EXISTS (SELECT 1 FROM old_customers o
                              WHERE o.id = n.id AND o.zuora_account_id IS NOT DISTINCT FROM n.zuora_account_id)
              AND (f.everyone
                   OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_actors a
                              WHERE a.flag_name = f.name AND a.customer_id = n.id)
                   OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, n.id) <= f.percentage))
        ),
        found AS MATERIALIZED (
            SELECT s.id, s.raw, s.account, a.id AS account_id
            FROM synced s LEFT JOIN public.billing_accounts a ON a.zuora_account_id = s.account
        ),
        created AS MATERIALIZED (
            SELECT m.account, billing_sync.create_billing_account(m.account) AS account_id
            FROM (SELECT DISTINCT f.account FROM found f
                  WHERE f.account IS NOT NULL AND f.account_id IS NULL ORDER BY f.account) m
        ),
        resolved AS MATERIALIZED (
            SELECT f.id, f.raw, f.account, coalesce(f.account_id, c.account_id) AS account_id
            FROM found f LEFT JOIN created c ON f.account_id IS NULL AND c.account = f.account
        ),
        removed AS (
            -- account_id IS NULL (no account, or one that could not be resolved) removes them all.
            DELETE FROM public.billing_account_memberships m
            USING resolved r
            WHERE m.customer_id = r.id AND m.billing_account_id IS DISTINCT FROM r.account_id
        ),
        to_add AS MATERIALIZED (
            SELECT r.account_id, r.id FROM resolved r
            WHERE r.account_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM public.billing_account_memberships m
                              WHERE m.customer_id = r.id AND m.billing_account_id = r.account_id)
        ),
        added AS (
            INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
            SELECT t.account_id, t.id FROM to_add t
            ON CONFLICT (customer_id, billing_account_id) DO NOTHING
            RETURNING customer_id
        ),
        events AS (
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            SELECT r.id, 'UPDATE',
                   CASE WHEN r.account IS NULL THEN 'not_an_account'
                        WHEN pg_catalog.pg_try_advisory_xact_lock(7300001, billing_sync.account_lock_key(r.account))
                        THEN 'account_unresolved'
                        ELSE 'account_contended' END,
                   pg_catalog."left"(r.raw, 200), pg_catalog.length(r.raw), pg_catalog.txid_current()
            FROM resolved r
            WHERE r.account_id IS NULL AND (r.account IS NOT NULL OR pg_catalog.btrim(r.raw, E' \t\n\r\v\f') <> '')
            ORDER BY r.id
            RETURNING id
        )
        -- The customers whose membership insert wrote nothing (computed only when there are any).
        SELECT CASE WHEN (SELECT count(*) FROM added) < (SELECT count(*) FROM to_add)
                    THEN ARRAY(SELECT t.id FROM to_add t EXCEPT ALL SELECT a.customer_id FROM added a) END,
               (SELECT min(e.id) FROM events e)
        INTO unwritten, first_event;
    END IF;

    IF unwritten IS NOT NULL THEN
        -- Fine where the membership is there now (a concurrent writer committed it: this new statement's
        -- snapshot sees it); otherwise something suppressed the insert (a rule or another trigger).
        WITH events AS (
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            SELECT n.id, TG_OP, 'membership_unwritten', pg_catalog."left"(n.zuora_account_id, 200),
                   pg_catalog.length(n.zuora_account_id), pg_catalog.txid_current()
            FROM new_customers n
            WHERE n.id = ANY (unwritten)
              AND NOT EXISTS (
                  SELECT 1 FROM public.billing_account_memberships m
                  JOIN public.billing_accounts a ON a.id = m.billing_account_id
                  WHERE m.customer_id = n.id
                    AND a.zuora_account_id = billing_sync.normalize_zuora_account_id(n.zuora_account_id))
            ORDER BY n.id
            RETURNING id
        )
        SELECT min(e.id) FROM events e INTO unwritten_event;
        first_event := LEAST(first_event, unwritten_event);  -- LEAST ignores NULL
    END IF;

    IF first_event IS NOT NULL THEN
        PERFORM pg_catalog.pg_notify(
            'billing_sync_skips',
            pg_catalog.json_build_object('transaction_id', pg_catalog.txid_current(), 'first_event_id', first_event)::text
        );
    END IF;
    RETURN NULL;
END;
$function$;
