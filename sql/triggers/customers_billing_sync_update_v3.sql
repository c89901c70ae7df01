-- The sync of updates that change a customer's raw zuora_account_id, released (revision 0013, issue 13; v2 in
-- 0006): row by row, always (account_data_persistence is retired; there is no kill switch to ask). UPDATE OF and
-- the WHEN keep every other update out of PL/pgSQL; the WHEN calls no function.
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id)
    EXECUTE FUNCTION billing_sync.sync_customer_updated();
