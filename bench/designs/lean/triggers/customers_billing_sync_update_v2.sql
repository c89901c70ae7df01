-- Updates that change the raw value, while the kill switch is on (the schema billing_sync_enabled exists:
-- billing_sync.sync_switch). UPDATE OF keeps other updates from even looking at the WHEN.
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id
          AND pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL)
    EXECUTE FUNCTION billing_sync.sync_customer_account();
