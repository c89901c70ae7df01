-- Marks the transaction when a customer is inserted with a value, for the WHEN of
-- billing_sync_customer_insert (a statement trigger cannot look at rows). The marking is the WHEN's own
-- side effect, a transaction-local setting, and the WHEN is always false (set_config returns the value
-- it set, never NULL): no event is queued and no function is called. Costs one set_config per such row.
CREATE TRIGGER billing_sync_customer_insert_mark
    AFTER INSERT ON public.customers
    FOR EACH ROW
    WHEN (NEW.zuora_account_id IS NOT NULL
          AND pg_catalog.set_config('billing_sync.customers_written', 'on', true) IS NULL)
    EXECUTE FUNCTION billing_sync.sync_marker();
