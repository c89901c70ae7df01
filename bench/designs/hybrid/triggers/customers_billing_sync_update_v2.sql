-- The sync of UPDATE statements: called for the first row of each statement whose raw zuora_account_id
-- changed (the WHEN remembers the statement's command id, NEW.cmin, in a transaction-local setting; later
-- rows of the same statement find it there and queue nothing), and only while the kill switch is on; the
-- function syncs the whole statement from the transition tables. Transition tables cannot be combined with
-- UPDATE OF, so every updated row is captured (a copy per row in memory, spilling to a temporary file past
-- work_mem), and the WHEN is evaluated for every updated row (an update of email stops at its first test).
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE ON public.customers
    REFERENCING OLD TABLE AS old_customers NEW TABLE AS new_customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id
          AND pg_catalog.current_setting('billing_sync.update_command', true) IS DISTINCT FROM (NEW.cmin)::text
          AND pg_catalog.set_config('billing_sync.update_command', (NEW.cmin)::text, true) IS NOT NULL
          AND billing_sync.sync_due())
    EXECUTE FUNCTION billing_sync.sync_customers();
