-- Row trigger function of billing_sync_customer_update on public.customers (revision 0007, issue 11; v1 in
-- 0006): while account_data_persistence is on for this customer, make its memberships exactly the one derived
-- from its zuora_account_id. Called for the rows whose raw value changed while the flag was enabled (WHEN).
--
-- What changed from v1, and why (field notes 8):
-- * The customer row is read again, as it is when the trigger runs, instead of trusting NEW: the
--   application's own AFTER triggers (which fire before this one when their names sort first) may have
--   rewritten the value or deleted the row. A rewritten row is synced to its final value (the nested update
--   fires this trigger too, with the same result); a deleted row is simply skipped.
-- * It never waits for another transaction: a new account is created only under a claim that is tried,
--   never waited for (billing_sync.resolve_account). A busy claim records account_contended and queues the
--   customer in billing_sync.sync_repairs; `sync-admin heal` brings it once the other transaction ended.
-- * Under REPEATABLE READ or SERIALIZABLE it reads and writes no billing rows and reads no gates: its snapshot
--   may predate rows another transaction committed (a backfill batch, an account created meanwhile, a flag
--   change), so what it would write could be stale, a conflict with such a row would fail the customer write
--   with a serialization error, and under SERIALIZABLE its reads alone add rw-conflicts. It queues the customer
--   (snapshot_isolation) for the repair, which decides from the current state after this transaction commits.
-- Skips are recorded as in v1 (billing_sync.sync_events) and announced by one pg_notify on billing_sync_skips
-- per statement; a queued repair also sends pg_notify('billing_sync_repairs', '') (folded to one per
-- transaction by PostgreSQL), which only wakes the repair: the table is the truth.
--
-- Rules (field notes 1 and 3): no EXCEPTION block and no savepoint; every case is an IF; billing_accounts
-- rows are only inserted; SECURITY DEFINER with a pinned search_path and qualified names.
CREATE OR REPLACE FUNCTION billing_sync.sync_customer_updated()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    in_rollout boolean;
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
    -- Under snapshot isolation, read nothing at all: not the gates (the snapshot may predate a flag change
    -- that the trigger's WHEN already saw), not the billing tables (under SERIALIZABLE every read adds
    -- rw-conflicts that can fail a customer transaction which commits without the sync). The repair decides
    -- from the current state, after this transaction commits. (READ UNCOMMITTED runs as READ COMMITTED.)
    IF pg_catalog.current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)
        VALUES (NEW.id, 'snapshot_isolation', pg_catalog.txid_current());
        PERFORM pg_catalog.pg_notify('billing_sync_repairs', '');
        RETURN NULL;
    END IF;

    -- One query: whether the flag is on for this customer, the row as it is now, its account, and whether
    -- the customer is a member of it already.
    SELECT f.everyone
           OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_actors x
                      WHERE x.flag_name = f.name AND x.customer_id = NEW.id)
           OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, NEW.id) <= f.percentage),
           c.id IS NOT NULL,
           c.zuora_account_id,
           n.account,
           a.id,
           EXISTS (SELECT 1 FROM public.billing_account_memberships m
                   WHERE m.customer_id = NEW.id AND m.billing_account_id = a.id)
    INTO in_rollout, present, raw, account, target_id, member
    FROM billing_sync.feature_flags f
    LEFT JOIN public.customers c ON c.id = NEW.id
    LEFT JOIN LATERAL (SELECT billing_sync.normalize_zuora_account_id(c.zuora_account_id) AS account) n ON true
    LEFT JOIN public.billing_accounts a ON a.zuora_account_id = n.account
    WHERE f.name = 'account_data_persistence' AND f.enabled;

    IF NOT coalesce(in_rollout, false) OR NOT present THEN
        -- Off for this customer, or the row is gone (deleted by another trigger: its memberships went with it).
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
