-- Only inserts that carry a value enter PL/pgSQL.
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    FOR EACH ROW
    WHEN (NEW.zuora_account_id IS NOT NULL)
    EXECUTE FUNCTION billing_sync.sync_customer_account();
