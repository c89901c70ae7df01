-- Row trigger function on public.customers: while account_data_persistence is on,
-- make the customer's memberships exactly the one derived from zuora_account_id.
--
-- Rules that keep customer writes safe (see shared field notes 1 and 3):
-- * no EXCEPTION block and no savepoint, so a bulk statement burns no transaction id
--   per row; the function cannot fail on data because every case is checked with IF;
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
BEGIN
    IF NOT coalesce(
        (SELECT f.enabled FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence'),
        false
    ) THEN
        RETURN NULL;
    END IF;

    account := billing_sync.normalize_zuora_account_id(NEW.zuora_account_id);

    IF account IS NOT NULL THEN
        SELECT a.id INTO account_id FROM public.billing_accounts a WHERE a.zuora_account_id = account;
        IF account_id IS NULL THEN
            account_id := billing_sync.create_billing_account(account);
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
    END IF;

    RETURN NULL;
END;
$function$;
