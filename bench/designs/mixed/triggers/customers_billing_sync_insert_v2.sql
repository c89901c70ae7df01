-- The sync of INSERT statements: called for the first row with a value of each statement while the kill
-- switch is on (the schema billing_sync_enabled exists: billing_sync.sync_switch); the function syncs the
-- whole statement from the transition table. The WHEN remembers the statement's command id (NEW.cmin) in a
-- transaction-local setting; a later row of the same statement finds it there, queues nothing and marks the
-- statement as multi-row (billing_sync.insert_many), which tells the function to take its set-based path.
-- No function of ours runs for a write while the flag is off.
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    REFERENCING NEW TABLE AS new_customers
    FOR EACH ROW
    WHEN (NEW.zuora_account_id IS NOT NULL
          AND pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL
          AND CASE WHEN pg_catalog.current_setting('billing_sync.insert_command', true) IS DISTINCT FROM (NEW.cmin)::text
                   THEN pg_catalog.set_config('billing_sync.insert_command', (NEW.cmin)::text, true) IS NOT NULL
                   ELSE pg_catalog.set_config('billing_sync.insert_many', (NEW.cmin)::text, true) IS NULL
              END)
    EXECUTE FUNCTION billing_sync.sync_customers_inserted();
