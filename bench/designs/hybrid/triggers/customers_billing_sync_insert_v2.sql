-- The sync of INSERT statements: called for the first row with a value of each statement (the WHEN
-- remembers the statement's command id, NEW.cmin, in a transaction-local setting; later rows of the same
-- statement find it there and queue nothing), and only while the kill switch is on; the function syncs the
-- whole statement from the transition table. The setting is the insert trigger's own: INSERT ... ON CONFLICT
-- DO UPDATE and MERGE run both triggers under one command id.
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    REFERENCING NEW TABLE AS new_customers
    FOR EACH ROW
    WHEN (NEW.zuora_account_id IS NOT NULL
          AND pg_catalog.current_setting('billing_sync.insert_command', true) IS DISTINCT FROM (NEW.cmin)::text
          AND pg_catalog.set_config('billing_sync.insert_command', (NEW.cmin)::text, true) IS NOT NULL
          AND billing_sync.sync_due())
    EXECUTE FUNCTION billing_sync.sync_customers();
