-- billing_sync.resolve_account(account): the id of billing account ACCOUNT, created if missing, for one
-- customer write of the sync; never waits for another transaction. OUT contended is true when another
-- transaction's claim covers ACCOUNT (billing_sync.claim_account): account_id is then NULL and the caller
-- records account_contended and queues the customer for the repair. account_id NULL with contended false
-- means the account could be neither found nor created although this transaction held the claim (a rule or
-- a trigger suppressed the insert, or a row was deleted): account_unresolved.
-- Replaces billing_sync.create_billing_account (revision 0007, issue 11), which waited for the holder of a
-- busy lock when it held none itself: that wait ignored the row locks the transaction holds.
-- Called only from the SECURITY DEFINER sync functions; not granted to anyone.
CREATE OR REPLACE FUNCTION billing_sync.resolve_account(account text, OUT account_id bigint, OUT contended boolean)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    contended := false;
    SELECT a.id INTO account_id FROM public.billing_accounts a WHERE a.zuora_account_id = account;
    IF account_id IS NOT NULL THEN
        RETURN;
    END IF;
    IF NOT billing_sync.claim_account(account) THEN
        contended := true;
        RETURN;
    END IF;
    -- With the claim held no other transaction has an uncommitted insert of ACCOUNT, so this cannot wait.
    -- Under READ COMMITTED a row committed since the lookup is a conflict: nothing is inserted, and the next
    -- statement's snapshot sees it. (Under REPEATABLE READ the sync never gets here: it defers to the repair.)
    -- No RETURNING: PostgreSQL refuses INSERT ... RETURNING on a table with a DO INSTEAD rule (the customer write
    -- would fail); the lookup after it, a new statement, sees the row inserted or committed meanwhile.
    INSERT INTO public.billing_accounts (zuora_account_id) VALUES (account)
    ON CONFLICT (zuora_account_id) DO NOTHING;
    SELECT a.id INTO account_id FROM public.billing_accounts a WHERE a.zuora_account_id = account;
END;
$function$;
