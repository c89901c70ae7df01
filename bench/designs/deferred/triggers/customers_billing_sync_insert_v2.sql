-- Once per INSERT statement on customers that inserted a value (marker) while the kill switch is on:
-- the set-based sync of the inserted rows (transition table new_customers).
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    REFERENCING NEW TABLE AS new_customers
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('billing_sync.customers_written', true) = 'on' AND billing_sync.sync_due())
    EXECUTE FUNCTION billing_sync.sync_customers();
