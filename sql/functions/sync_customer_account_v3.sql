-- Row trigger function on public.customers (v3: skips are recorded, issue 5). Same sync as v2:
-- while account_data_persistence is on for this customer (billing_sync.flag_enabled_for: kill
-- switch, everyone, actor, percentage), make its memberships exactly the one derived from
-- zuora_account_id. Customers outside the rollout keep their rows but are not maintained.
--
-- New in v3: every write the sync cannot carry out is recorded, never raised. Each case is
-- detected with an IF where it arises and named by a stable reason code (the codes are listed in
-- sql/tables/sync_events_v1.sql); one row per skipped customer write goes to
-- billing_sync.sync_events, and the id of the statement's first such row is left in the
-- transaction-local setting billing_sync.pending_skip_event for the statement-level trigger
-- billing_sync_customer_skips, which sends one pg_notify per statement (not per row).
-- The event is a plain INSERT into a table with two indexes: measured by bench/skip_cost.py, a
-- bulk UPDATE of bad values costs less than the same UPDATE of good values (which writes
-- memberships with their foreign-key checks), so no deferral is needed.
--
-- Rules that keep customer writes safe (see shared field notes 1 and 3):
-- * no EXCEPTION block and no savepoint, so a bulk statement burns no transaction id
--   per row; the function cannot fail on data because every case is checked with IF;
--   the event insert cannot fail on data either (no constraint but NOT NULL on values
--   that are never NULL here; the value is cut to 200 characters);
-- * billing_accounts rows are only ever inserted with ON CONFLICT DO NOTHING and looked
--   up, never updated, so a shared account is never row-locked;
-- * SECURITY DEFINER with a pinned search_path and qualified names: the application
--   role needs no rights here and cannot redirect the function to its own objects.
-- When nothing changes (already a member, no stale rows) it writes nothing at all.
CREATE OR REPLACE FUNCTION billing_sync.sync_customer_account()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    account text;
    account_id bigint;
    skip_reason text;
    written bigint;
    event_id bigint;
BEGIN
    IF NOT billing_sync.flag_enabled_for('account_data_persistence', NEW.id) THEN
        RETURN NULL;
    END IF;

    account := billing_sync.normalize_zuora_account_id(NEW.zuora_account_id);

    IF account IS NULL THEN
        -- NULL or blank means "no account" (not a skip); anything else failed the rule. The blanks
        -- are normalize_zuora_account_id's; vertical tab is \x0b (before 18, E'\v' is the letter v).
        IF pg_catalog.btrim(NEW.zuora_account_id, E' \t\n\r\x0b\f') <> '' THEN
            skip_reason := 'not_an_account';
        END IF;
    ELSE
        SELECT a.id INTO account_id FROM public.billing_accounts a WHERE a.zuora_account_id = account;
        IF account_id IS NULL THEN
            account_id := billing_sync.create_billing_account(account);
            IF account_id IS NULL THEN
                -- create_billing_account gives NULL when another transaction is creating the
                -- account and waiting for it was not safe (this transaction holds an account lock
                -- of its own), or when the account could be neither found nor created. Its account
                -- lock tells which: still held by another transaction in the first case, held by
                -- this one (re-entrant, so taking it again costs nothing) in the second.
                IF pg_catalog.pg_try_advisory_xact_lock(7300001, billing_sync.account_lock_key(account)) THEN
                    skip_reason := 'account_unresolved';
                ELSE
                    skip_reason := 'account_contended';
                END IF;
            END IF;
        END IF;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        -- account_id IS NULL (no account, or one we could not resolve) removes them all.
        DELETE FROM public.billing_account_memberships m
        WHERE m.customer_id = NEW.id
          AND m.billing_account_id IS DISTINCT FROM account_id;
    END IF;

    -- Look before inserting: ON CONFLICT DO NOTHING alone would still draw an id from
    -- the membership sequence on every no-op update.
    IF account_id IS NOT NULL AND (TG_OP = 'INSERT' OR NOT EXISTS (
        SELECT 1 FROM public.billing_account_memberships m
        WHERE m.customer_id = NEW.id AND m.billing_account_id = account_id
    )) THEN
        INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
        VALUES (account_id, NEW.id)
        ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        -- Nothing written is fine if the membership is there (a concurrent writer); otherwise
        -- something suppressed the insert (a rule or another trigger on the table). Two IFs, not
        -- one AND: a condition with a subquery runs the executor on every row, even when false.
        IF written = 0 THEN
            IF NOT EXISTS (
                SELECT 1 FROM public.billing_account_memberships m
                WHERE m.customer_id = NEW.id AND m.billing_account_id = account_id
            ) THEN
                skip_reason := 'membership_unwritten';
            END IF;
        END IF;
    END IF;

    IF skip_reason IS NOT NULL THEN
        INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
        VALUES (NEW.id, TG_OP, skip_reason, pg_catalog."left"(NEW.zuora_account_id, 200),
                pg_catalog.length(NEW.zuora_account_id), pg_catalog.txid_current())
        RETURNING id INTO event_id;
        -- Remember the statement's first event (a transaction-local setting: it survives this
        -- function's own SET search_path, and is undone with the transaction or savepoint).
        IF coalesce(pg_catalog.current_setting('billing_sync.pending_skip_event', true), '') = '' THEN
            PERFORM pg_catalog.set_config('billing_sync.pending_skip_event', event_id::text, true);
        END IF;
    END IF;

    RETURN NULL;
END;
$function$;
