-- Row trigger function of billing_sync_customer_update on public.customers, released (revision 0013, issue 13; v2
-- in 0007): account_data_persistence is retired, the sync is on for every customer. v2 without the flag: no read of
-- billing_sync.feature_flags or its actors, no gate; nothing else changed (read v2 for the rules: the row as it is
-- when the trigger runs, never wait, defer under snapshot isolation, one notification per statement).
--
-- Rules (field notes 1 and 3): no EXCEPTION block and no savepoint; every case is an IF; billing_accounts rows are
-- only inserted; SECURITY DEFINER with a pinned search_path and qualified names.
CREATE OR REPLACE FUNCTION billing_sync.sync_customer_updated()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    present boolean;
    raw text;
    account text;
    target_id bigint;
    member boolean;
    contended boolean := false;
    written bigint;
    skip_reason text;
    repair_reason text;
    first_event bigint;
    command text;
    notified text;
BEGIN
    -- Under snapshot isolation, read nothing at all: not the billing tables (the snapshot may predate rows
    -- another transaction committed, and under SERIALIZABLE every read adds rw-conflicts that can fail a customer
    -- transaction which commits without the sync). The repair decides from the current state, after this
    -- transaction commits. (READ UNCOMMITTED runs as READ COMMITTED.)
    IF pg_catalog.current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        VALUES (NEW.id, 'snapshot_isolation', pg_catalog.txid_current());
        PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
        RETURN NULL;
    END IF;

    -- One query: the row as it is now, its account, and whether the customer is a member of it already.
    SELECT true,
           c.zuora_account_id,
           n.account,
           a.id,
           EXISTS (SELECT 1 FROM public.billing_account_memberships m
                   WHERE m.customer_id = NEW.id AND m.billing_account_id = a.id)
    INTO present, raw, account, target_id, member
    FROM public.customers c
    CROSS JOIN LATERAL (SELECT billing_sync.normalize_zuora_account_id(c.zuora_account_id) AS account) n
    LEFT JOIN public.billing_accounts a ON a.zuora_account_id = n.account
    WHERE c.id = NEW.id;

    IF NOT coalesce(present, false) THEN
        -- The row is gone (deleted by another trigger: its memberships went with it).
        RETURN NULL;
    END IF;

    IF account IS NULL THEN
        -- NULL or blank means "no account" (not a skip); anything else failed the rule. The blanks are
        -- normalize_zuora_account_id's; vertical tab is \x0b (before 18, E'\v' is the letter v).
        IF pg_catalog.btrim(raw, E' \t\n\r\x0b\f') <> '' THEN
            skip_reason := 'not_an_account';
        END IF;
    ELSIF target_id IS NULL THEN
        SELECT r.account_id, r.contended INTO target_id, contended FROM billing_sync.resolve_account(account) r;
        IF contended THEN
            skip_reason := 'account_contended';
            repair_reason := 'account_contended';
        ELSIF target_id IS NULL THEN
            skip_reason := 'account_unresolved';
        END IF;
    END IF;

    -- target_id IS NULL (no account, or one that could not be resolved) removes them all. Only this
    -- customer's rows: any other writer of them holds this customer's row, which this write holds now.
    DELETE FROM public.billing_account_memberships m
    WHERE m.customer_id = NEW.id AND m.billing_account_id IS DISTINCT FROM target_id;
    -- Looked up first (member, above; an account just created has no members): ON CONFLICT DO NOTHING alone
    -- would draw an id from the membership sequence on every no-op update.
    IF target_id IS NOT NULL AND NOT coalesce(member, false) THEN
        INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
        VALUES (target_id, NEW.id)
        ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        -- Nothing written is fine where the membership is there; otherwise something suppressed the insert
        -- (a rule or another trigger on the table). Two IFs, not one AND: a condition with a subquery runs
        -- the executor on every row, even when false.
        IF written = 0 THEN
            IF NOT EXISTS (
                SELECT 1 FROM public.billing_account_memberships m
                WHERE m.customer_id = NEW.id AND m.billing_account_id = target_id
            ) THEN
                skip_reason := 'membership_unwritten';
            END IF;
        END IF;
    END IF;

    IF repair_reason IS NOT NULL THEN
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        VALUES (NEW.id, repair_reason, pg_catalog.txid_current());
        PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
    END IF;

    IF skip_reason IS NOT NULL THEN
        INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
        VALUES (NEW.id, 'UPDATE', skip_reason, pg_catalog."left"(raw, 200),
                pg_catalog.length(raw), pg_catalog.txid_current())
        RETURNING id INTO first_event;
    END IF;

    -- One notification per statement: the first skip of the statement sends it, the others of the same
    -- statement do not. The statement is told by the command id of this row version (cmin), read only here,
    -- on the rare path, so that the trigger's WHEN stays as cheap as it can be.
    IF first_event IS NOT NULL THEN
        SELECT c.cmin::text INTO command FROM public.customers c WHERE c.id = NEW.id;
    END IF;
    IF first_event IS NOT NULL
       AND command IS DISTINCT FROM pg_catalog.current_setting('billing_sync.update_notified', true) THEN
        notified := pg_catalog.set_config('billing_sync.update_notified', command, true);
        PERFORM pg_catalog.pg_notify(
            'billing_sync_skips',
            pg_catalog.json_build_object('transaction_id', pg_catalog.txid_current(), 'first_event_id', first_event)::text
        );
    END IF;
    RETURN NULL;
END;
$function$;
