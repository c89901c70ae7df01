-- Only updates that name zuora_account_id and change its raw value enter PL/pgSQL:
-- an update of email or any other column costs nothing here.
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id)
    EXECUTE FUNCTION billing_sync.sync_customer_account();
