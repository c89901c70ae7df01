-- Once per statement that can have synced a customer (the same events as the row triggers): send
-- the statement's skip notification, if it recorded any. A statement trigger cannot look at rows,
-- and a transition table would copy every updated row, so the row trigger leaves a marker instead.
CREATE TRIGGER billing_sync_customer_skips
    AFTER INSERT OR UPDATE OF zuora_account_id ON public.customers
    FOR EACH STATEMENT
    EXECUTE FUNCTION billing_sync.notify_sync_skips();
