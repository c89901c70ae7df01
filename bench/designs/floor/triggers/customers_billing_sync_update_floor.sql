-- Calibration only: as customers_billing_sync_insert_floor.sql, for updates of zuora_account_id.
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id AND NEW.email = 'never')
    EXECUTE FUNCTION billing_sync.sync_noop();
