-- Statement trigger function of billing_sync_customer_insert on public.customers (revision 0006; replaces
-- sync_customer_account v3 for inserts): the sync of one INSERT statement, with its transition table
-- new_customers, once per statement while the kill switch is on. One row with a value (the portal's
-- traffic): that row, with two statements after the count; more: one set-based pass (data-modifying CTEs).
-- Rows synced: those with a value whose customer the flag is on for (kill switch, everyone, actor,
-- percentage: the decision of billing_sync.flag_enabled_for, read from the flag row).
--
-- What it writes, as v3: missing billing accounts through billing_sync.create_billing_account (advisory
-- try-lock, in value order; never updated), the derived memberships (ON CONFLICT DO NOTHING), one
-- billing_sync.sync_events row per skipped customer write (reasons as in sql/tables/sync_events_v1.sql), and
-- one pg_notify on billing_sync_skips per statement that recorded skips, with the payload of
-- notify_sync_skips ({"transaction_id", "first_event_id"}). The blanks trimmed before deciding "no account"
-- are normalize_zuora_account_id's; vertical tab is \x0b (before 18, E'\v' is the letter v).
--
-- Rules (field notes 1 and 3): no EXCEPTION block and no savepoint; every case is an IF or a WHERE;
-- billing_accounts rows are only inserted; SECURITY DEFINER with a pinned search_path and qualified names.
CREATE OR REPLACE FUNCTION billing_sync.sync_customers_inserted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    rows_with_value bigint;
    only_id bigint;
    raw text;
    account text;
    in_rollout boolean;
    target_id bigint;
    written bigint;
    skip_reason text;
    unwritten bigint[];
    first_event bigint;
    unwritten_event bigint;
BEGIN
    -- The rows with a value: how many, and the only one's id and value when there is one.
    SELECT count(*), min(n.id), min(n.zuora_account_id)
    INTO rows_with_value, only_id, raw
    FROM new_customers n
    WHERE n.zuora_account_id IS NOT NULL;

    IF rows_with_value > 1 THEN
        -- The whole statement, set-based.
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
            WHERE r.account_id IS NULL AND (r.account IS NOT NULL OR pg_catalog.btrim(r.raw, E' \t\n\r\x0b\f') <> '')
            ORDER BY r.id
            RETURNING id
        )
        -- The customers whose membership insert wrote nothing (computed only when there are any).
        SELECT CASE WHEN (SELECT count(*) FROM added) < (SELECT count(*) FROM to_add)
                    THEN ARRAY(SELECT t.id FROM to_add t EXCEPT ALL SELECT a.customer_id FROM added a) END,
               (SELECT min(e.id) FROM events e)
        INTO unwritten, first_event;

        IF unwritten IS NOT NULL THEN
            -- Fine where the membership is there now (a concurrent writer committed it: this new statement's
            -- snapshot sees it); otherwise something suppressed the insert (a rule or another trigger).
            WITH events AS (
                INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
                SELECT n.id, 'INSERT', 'membership_unwritten', pg_catalog."left"(n.zuora_account_id, 200),
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
    ELSIF rows_with_value = 1 THEN
        -- The statement's only row with a value (the portal's traffic): the gates and the account lookup in
        -- one query, then the membership.
        account := billing_sync.normalize_zuora_account_id(raw);
        SELECT f.everyone
               OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_actors x
                          WHERE x.flag_name = f.name AND x.customer_id = only_id)
               OR (f.percentage > 0
                   AND billing_sync.unleash_bucket(f.name, only_id) <= f.percentage),
               (SELECT a.id FROM public.billing_accounts a WHERE a.zuora_account_id = account)
        INTO in_rollout, target_id
        FROM billing_sync.feature_flags f
        WHERE f.name = 'account_data_persistence' AND f.enabled;
        IF NOT coalesce(in_rollout, false) THEN
            RETURN NULL;
        END IF;
        -- The statement's only row.
        IF account IS NULL THEN
            -- NULL or blank means "no account" (not a skip); anything else failed the rule.
            IF pg_catalog.btrim(raw, E' \t\n\r\x0b\f') <> '' THEN
                skip_reason := 'not_an_account';
            END IF;
        ELSIF target_id IS NULL THEN
            target_id := billing_sync.create_billing_account(account);
            IF target_id IS NULL THEN
                -- Busy elsewhere (contended) or not resolvable here: the account lock tells which (v3).
                IF pg_catalog.pg_try_advisory_xact_lock(7300001, billing_sync.account_lock_key(account)) THEN
                    skip_reason := 'account_unresolved';
                ELSE
                    skip_reason := 'account_contended';
                END IF;
            END IF;
        END IF;

        IF target_id IS NOT NULL THEN
            INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
            VALUES (target_id, only_id)
            ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
        END IF;
        GET DIAGNOSTICS written = ROW_COUNT;
        -- Nothing written is fine where the membership is there (it was already, or a concurrent writer's);
        -- otherwise something suppressed the insert (a rule or another trigger on the table). Two IFs, not one
        -- AND: a condition with a subquery runs the executor every time, even when false.
        IF target_id IS NOT NULL AND written = 0 THEN
            IF NOT EXISTS (
                SELECT 1 FROM public.billing_account_memberships m
                WHERE m.customer_id = only_id AND m.billing_account_id = target_id
            ) THEN
                skip_reason := 'membership_unwritten';
            END IF;
        END IF;

        IF skip_reason IS NOT NULL THEN
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            VALUES (only_id, 'INSERT', skip_reason, pg_catalog."left"(raw, 200),
                    pg_catalog.length(raw), pg_catalog.txid_current())
            RETURNING id INTO first_event;
        END IF;
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
