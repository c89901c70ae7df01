-- Statement trigger function of billing_sync_customer_insert on public.customers, released (revision 0013, issue 13;
-- v3 in 0008): account_data_persistence is retired, the sync is on for every customer. v3 without the flag: no read
-- of billing_sync.feature_flags or its actors, no gate, nothing else changed (read v3 and v2 for the rules: the row
-- as it is now, never wait, defer under snapshot isolation, one pass over the rows of a multi-row INSERT).
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
    present boolean;
    raw text;
    account text;
    target_id bigint;
    contended boolean := false;
    written bigint;
    skip_reason text;
    ids bigint[];
    raws text[];
    accounts text[];
    account_ids bigint[];
    missing text[];
    claimed text[];
    queued bigint := 0;
    first_event bigint;
    unwritten_event bigint;
BEGIN
    -- READ UNCOMMITTED runs as READ COMMITTED.
    IF pg_catalog.current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
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

    -- How many rows came with a value; for one, the row as it is now and its account, in one query.
    SELECT s.rows_with_value, s.only_id, c.id IS NOT NULL, c.zuora_account_id, n.account, a.id
    INTO rows_with_value, only_id, present, raw, account, target_id
    FROM (SELECT count(*) AS rows_with_value, min(t.id) AS only_id
          FROM new_customers t WHERE t.zuora_account_id IS NOT NULL) s
    LEFT JOIN public.customers c ON s.rows_with_value = 1 AND c.id = s.only_id
    LEFT JOIN LATERAL (SELECT billing_sync.normalize_zuora_account_id(c.zuora_account_id) AS account) n ON true
    LEFT JOIN public.billing_accounts a ON a.zuora_account_id = n.account;

    IF rows_with_value > 1 THEN
        -- The rows as they are now, with the accounts that exist: one pass.
        SELECT coalesce(array_agg(r.id ORDER BY r.id), '{}'), coalesce(array_agg(r.raw ORDER BY r.id), '{}'),
               coalesce(array_agg(r.account ORDER BY r.id), '{}'), coalesce(array_agg(a.id ORDER BY r.id), '{}')
        INTO ids, raws, accounts, account_ids
        FROM (
            SELECT c.id, c.zuora_account_id AS raw, billing_sync.normalize_zuora_account_id(c.zuora_account_id) AS account
            FROM new_customers t
            JOIN public.customers c ON c.id = t.id
            WHERE c.zuora_account_id IS NOT NULL
            OFFSET 0  -- normalize once per row, before the join
        ) r
        LEFT JOIN public.billing_accounts a ON a.zuora_account_id = r.account;

        -- The accounts still missing: claimed without waiting, created in value order (never updated), and
        -- looked up again in a new statement, which sees those created here and those committed meanwhile.
        missing := ARRAY(SELECT DISTINCT u.account FROM unnest(accounts, account_ids) AS u(account, account_id)
                         WHERE u.account_id IS NULL AND u.account IS NOT NULL);
        IF pg_catalog.cardinality(missing) > 0 THEN
            claimed := billing_sync.claim_accounts(missing);
            IF pg_catalog.cardinality(claimed) > 0 THEN
                INSERT INTO public.billing_accounts (zuora_account_id)
                SELECT c.account FROM unnest(claimed) AS c(account) ORDER BY c.account
                ON CONFLICT (zuora_account_id) DO NOTHING;
            END IF;
            account_ids := ARRAY(
                SELECT coalesce(u.account_id, m.id)
                FROM unnest(accounts, account_ids) WITH ORDINALITY AS u(account, account_id, position)
                LEFT JOIN (SELECT a.id, a.zuora_account_id FROM public.billing_accounts a
                           WHERE a.zuora_account_id = ANY (missing)) m
                       ON u.account_id IS NULL AND m.zuora_account_id = u.account
                ORDER BY u.position
            );
        END IF;

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
                   CASE WHEN u.account IS NULL THEN 'not_an_account'
                        WHEN u.account = ANY (claimed) THEN 'account_unresolved'
                        ELSE 'account_contended' END AS reason
            FROM unnest(ids, raws, accounts, account_ids) AS u(id, raw, account, account_id)
            WHERE u.account_id IS NULL
              AND (u.account IS NOT NULL OR pg_catalog.btrim(u.raw, E' \t\n\r\x0b\f') <> '')
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
        -- The statement's only row with a value (the portal's traffic). The row is gone (deleted by another
        -- trigger): nothing to sync.
        IF NOT present THEN
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
