-- Statement trigger function of billing_sync_customer_insert on public.customers (revision 0007, issue 11; v1
-- in 0006): the sync of one INSERT statement, with its transition table new_customers, once per statement
-- while the kill switch is on. Rows synced: those whose customer the flag is on for (kill switch, everyone,
-- actor, percentage: the decision of billing_sync.flag_enabled_for, read from the flag row) and that have a
-- value. One such row (the portal's traffic): a few per-row statements; more: set-based statements.
--
-- What changed from v1, and why (field notes 8):
-- * The rows are read from customers as they are when the trigger runs, not from the transition table: the
--   application's own AFTER triggers run before a statement trigger and may have rewritten a value (it is
--   synced to its final value) or deleted the row (it is skipped; v1 then failed the INSERT on the foreign
--   key of the membership).
-- * It never waits for another transaction: new accounts are created only under claims that are tried,
--   never waited for (billing_sync.resolve_account for one row, billing_sync.claim_accounts for many: at most
--   256 region locks whatever the number of accounts). A customer whose account is claimed elsewhere records
--   account_contended and is queued in billing_sync.sync_repairs for `sync-admin heal`.
-- * Under REPEATABLE READ or SERIALIZABLE it reads nothing and writes no billing rows: it queues every row
--   with a value (snapshot_isolation; see sync_customer_updated v2 for why).
-- What it writes otherwise is v1's: the derived memberships (ON CONFLICT DO NOTHING), one
-- billing_sync.sync_events row per skipped customer write, one pg_notify on billing_sync_skips per statement
-- that recorded skips ({"transaction_id", "first_event_id"}), and pg_notify('billing_sync_repairs', '') when
-- it queued a repair.
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
    -- READ UNCOMMITTED runs as READ COMMITTED.
    snapshot_isolation boolean := pg_catalog.current_setting('transaction_isolation')
                                  NOT IN ('read committed', 'read uncommitted');
    target_id bigint;
    contended boolean := false;
    written bigint;
    skip_reason text;
    ids bigint[];
    raws text[];
    claimed text[];
    account_ids bigint[];
    queued bigint := 0;
    first_event bigint;
    unwritten_event bigint;
BEGIN
    IF snapshot_isolation THEN
        -- Read nothing (see sync_customer_updated v2): every row with a value is queued, the repair decides from
        -- the current state after this transaction commits (the flag, the gates, the row as it ends up).
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        SELECT n.id, 'snapshot_isolation', pg_catalog.txid_current()
        FROM new_customers n
        WHERE n.zuora_account_id IS NOT NULL
        ORDER BY n.id;
        GET DIAGNOSTICS queued = ROW_COUNT;
        IF queued > 0 THEN
            PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
        END IF;
        RETURN NULL;
    END IF;

    -- The rows with a value as they are now: how many, and the only one's id and value when there is one.
    SELECT count(*), min(c.id), min(c.zuora_account_id)
    INTO rows_with_value, only_id, raw
    FROM new_customers n
    JOIN public.customers c ON c.id = n.id
    WHERE c.zuora_account_id IS NOT NULL;

    IF rows_with_value > 1 THEN
        -- The rows the flag is on for, with their current values.
        SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}'), coalesce(array_agg(c.zuora_account_id ORDER BY c.id), '{}')
        INTO ids, raws
        FROM billing_sync.feature_flags f
        CROSS JOIN new_customers n
        JOIN public.customers c ON c.id = n.id
        WHERE f.name = 'account_data_persistence' AND f.enabled
          AND c.zuora_account_id IS NOT NULL
          AND (f.everyone
               OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_actors a
                          WHERE a.flag_name = f.name AND a.customer_id = c.id)
               OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, c.id) <= f.percentage));

        -- The missing accounts, claimed without waiting and created in value order (never updated).
        claimed := billing_sync.claim_accounts(ARRAY(
            SELECT DISTINCT n.account
            FROM unnest(raws) AS u(raw)
            CROSS JOIN LATERAL (SELECT billing_sync.normalize_zuora_account_id(u.raw) AS account) n
            WHERE n.account IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = n.account)));
        IF pg_catalog.cardinality(claimed) > 0 THEN
            INSERT INTO public.billing_accounts (zuora_account_id)
            SELECT c.account FROM unnest(claimed) AS c(account) ORDER BY c.account
            ON CONFLICT (zuora_account_id) DO NOTHING;
        END IF;

        -- A new statement (a new snapshot): it sees the accounts just created and those committed meanwhile.
        account_ids := ARRAY(
            SELECT a.id
            FROM unnest(raws) WITH ORDINALITY AS u(raw, position)
            LEFT JOIN public.billing_accounts a ON a.zuora_account_id = billing_sync.normalize_zuora_account_id(u.raw)
            ORDER BY u.position
        );
        -- No RETURNING: PostgreSQL refuses INSERT ... RETURNING on a table with a DO INSTEAD rule, which would
        -- fail the customer write; the row count says whether every membership was written.
        INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
        SELECT u.account_id, u.id
        FROM unnest(ids, account_ids) AS u(id, account_id)
        WHERE u.account_id IS NOT NULL
        ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;

        WITH skipped AS MATERIALIZED (
            -- An account that is still missing was claimed by another transaction (contended), or was
            -- claimed here and still could not be created (unresolved).
            SELECT u.id, u.raw,
                   CASE WHEN n.account IS NULL THEN 'not_an_account'
                        WHEN n.account IN (SELECT c.account FROM unnest(claimed) AS c(account))
                        THEN 'account_unresolved'
                        ELSE 'account_contended' END AS reason
            FROM unnest(ids, raws, account_ids) AS u(id, raw, account_id)
            CROSS JOIN LATERAL (SELECT billing_sync.normalize_zuora_account_id(u.raw) AS account) n
            WHERE u.account_id IS NULL
              AND (n.account IS NOT NULL OR pg_catalog.btrim(u.raw, E' \t\n\r\x0b\f') <> '')
        ),
        events AS (
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            SELECT s.id, 'INSERT', s.reason, pg_catalog."left"(s.raw, 200), pg_catalog.length(s.raw),
                   pg_catalog.txid_current()
            FROM skipped s
            ORDER BY s.id
            RETURNING id
        ),
        repairs AS (
            INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
            SELECT s.id, s.reason, pg_catalog.txid_current()
            FROM skipped s
            WHERE s.reason = 'account_contended'
            ORDER BY s.id
            RETURNING id
        )
        SELECT (SELECT min(e.id) FROM events e), (SELECT count(*) FROM repairs)
        INTO first_event, queued;

        -- Fewer written than resolved: fine where the membership is there (it was already); otherwise
        -- something suppressed the insert (a rule or another trigger). Checked only then.
        IF written < (SELECT count(*) FROM unnest(account_ids) AS a(id) WHERE a.id IS NOT NULL) THEN
            WITH events AS (
                INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
                SELECT u.id, 'INSERT', 'membership_unwritten', pg_catalog."left"(u.raw, 200),
                       pg_catalog.length(u.raw), pg_catalog.txid_current()
                FROM unnest(ids, raws, account_ids) AS u(id, raw, account_id)
                WHERE u.account_id IS NOT NULL
                  AND NOT EXISTS (
                      SELECT 1 FROM public.billing_account_memberships m
                      WHERE m.customer_id = u.id AND m.billing_account_id = u.account_id)
                ORDER BY u.id
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
        IF account IS NULL THEN
            -- NULL or blank means "no account" (not a skip); anything else failed the rule.
            IF pg_catalog.btrim(raw, E' \t\n\r\x0b\f') <> '' THEN
                skip_reason := 'not_an_account';
            END IF;
        ELSIF target_id IS NULL THEN
            SELECT r.account_id, r.contended INTO target_id, contended FROM billing_sync.resolve_account(account) r;
            IF contended THEN
                skip_reason := 'account_contended';
                INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
                VALUES (only_id, 'account_contended', pg_catalog.txid_current());
                queued := 1;
            ELSIF target_id IS NULL THEN
                skip_reason := 'account_unresolved';
            END IF;
        END IF;

        IF target_id IS NOT NULL THEN
            INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
            VALUES (target_id, only_id)
            ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
            GET DIAGNOSTICS written = ROW_COUNT;
            -- Nothing written is fine where the membership is there (it was already); otherwise something
            -- suppressed the insert (a rule or another trigger on the table). Two IFs, not one AND: a
            -- condition with a subquery runs the executor every time, even when false.
            IF written = 0 THEN
                IF NOT EXISTS (
                    SELECT 1 FROM public.billing_account_memberships m
                    WHERE m.customer_id = only_id AND m.billing_account_id = target_id
                ) THEN
                    skip_reason := 'membership_unwritten';
                END IF;
            END IF;
        END IF;

        IF skip_reason IS NOT NULL THEN
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            VALUES (only_id, 'INSERT', skip_reason, pg_catalog."left"(raw, 200),
                    pg_catalog.length(raw), pg_catalog.txid_current())
            RETURNING id INTO first_event;
        END IF;
    END IF;

    IF queued > 0 THEN
        PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
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
