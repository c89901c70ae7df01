-- Marks the transaction when an update changes a customer's raw zuora_account_id, for the WHEN of
-- billing_sync_customer_update (whose transition tables capture every updated row, and which cannot have a
-- column list). The marking is the WHEN's own side effect, a transaction-local setting, and the WHEN is
-- always false (set_config returns the value it set, never NULL): no event is queued and no function is
-- called. UPDATE OF keeps it from even being looked at when the statement does not set the column.
CREATE TRIGGER billing_sync_customer_update_mark
    AFTER UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id
          AND pg_catalog.set_config('billing_sync.customers_written', 'on', true) IS NULL)
    EXECUTE FUNCTION billing_sync.sync_marker();
