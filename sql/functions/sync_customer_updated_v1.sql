-- Row trigger function of billing_sync_customer_update on public.customers (revision 0006; replaces
-- sync_customer_account v3 for updates, and with it the skips statement trigger and notify_sync_skips): while
-- account_data_persistence is on for this customer, make its memberships exactly the one derived from its
-- new zuora_account_id. Called for the rows whose raw value changed while the flag was enabled (WHEN).
--
-- Three statements per row instead of v3's five: the gates, the account lookup and whether the customer is a
-- member already in one query, the stale membership delete, and the derived membership insert when it is
-- missing (one data-modifying CTE for the last two measured slower than two statements). Skips are
-- recorded as in v3 (one billing_sync.sync_events row per skipped customer write) and announced by one
-- pg_notify on billing_sync_skips per statement, with v3's payload ({"transaction_id", "first_event_id"}).
--
-- Rules (field notes 1 and 3): no EXCEPTION block and no savepoint; every case is an IF; billing_accounts
-- rows are only inserted, through billing_sync.create_billing_account (advisory try-lock); SECURITY DEFINER
-- with a pinned search_path and qualified names.
CREATE OR REPLACE FUNCTION billing_sync.sync_customer_updated()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    account text := billing_sync.normalize_zuora_account_id(NEW.zuora_account_id);
    in_rollout boolean;
    target_id bigint;
    member boolean;
    written bigint;
    skip_reason text;
    first_event bigint;
    command text;
    notified text;
BEGIN
    -- One query: whether the flag is on for this customer, its account, and whether it is a member already.
    SELECT f.everyone
           OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_actors x
                      WHERE x.flag_name = f.name AND x.customer_id = NEW.id)
           OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, NEW.id) <= f.percentage),
           a.id,
           EXISTS (SELECT 1 FROM public.billing_account_memberships m
                   WHERE m.customer_id = NEW.id AND m.billing_account_id = a.id)
    INTO in_rollout, target_id, member
    FROM billing_sync.feature_flags f
    LEFT JOIN public.billing_accounts a ON a.zuora_account_id = account
    WHERE f.name = 'account_data_persistence' AND f.enabled;

    IF in_rollout THEN
        IF account IS NULL THEN
            -- NULL or blank means "no account" (not a skip); anything else failed the rule. The blanks are
            -- normalize_zuora_account_id's; vertical tab is \x0b (before 18, E'\v' is the letter v).
            IF pg_catalog.btrim(NEW.zuora_account_id, E' \t\n\r\x0b\f') <> '' THEN
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

        -- target_id IS NULL (no account, or one that could not be resolved) removes them all.
        DELETE FROM public.billing_account_memberships m
        WHERE m.customer_id = NEW.id AND m.billing_account_id IS DISTINCT FROM target_id;
        -- Looked up first (member, above; an account just created has no members): ON CONFLICT DO NOTHING alone
        -- would draw an id from the membership sequence on every no-op update.
        IF target_id IS NOT NULL AND NOT coalesce(member, false) THEN
            INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
            VALUES (target_id, NEW.id)
            ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
            GET DIAGNOSTICS written = ROW_COUNT;
            -- Nothing written is fine where the membership is there (a concurrent writer's); otherwise something
            -- suppressed the insert (a rule or another trigger on the table). Two IFs, not one AND: a condition
            -- with a subquery runs the executor on every row, even when false.
            IF written = 0 THEN
                IF NOT EXISTS (
                    SELECT 1 FROM public.billing_account_memberships m
                    WHERE m.customer_id = NEW.id AND m.billing_account_id = target_id
                ) THEN
                    skip_reason := 'membership_unwritten';
                END IF;
            END IF;
        END IF;

        IF skip_reason IS NOT NULL THEN
            INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)
            VALUES (NEW.id, 'UPDATE', skip_reason, pg_catalog."left"(NEW.zuora_account_id, 200),
                    pg_catalog.length(NEW.zuora_account_id), pg_catalog.txid_current())
            RETURNING id INTO first_event;
        END IF;
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
