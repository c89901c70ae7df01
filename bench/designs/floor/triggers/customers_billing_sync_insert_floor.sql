-- Calibration only: the cheapest possible row trigger, whose WHEN is false without calling any function.
-- What it costs a statement is what any trigger-based sync costs at least while the flag is off.
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    FOR EACH ROW
    WHEN (NEW.zuora_account_id IS NOT NULL AND NEW.email = 'never')
    EXECUTE FUNCTION billing_sync.sync_noop();
