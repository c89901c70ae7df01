-- A TRUNCATE of customers takes the memberships along (billing_sync.sync_customers_truncated says why).
CREATE TRIGGER billing_sync_customer_truncate
    AFTER TRUNCATE ON public.customers
    FOR EACH STATEMENT
    EXECUTE FUNCTION billing_sync.sync_customers_truncated();
