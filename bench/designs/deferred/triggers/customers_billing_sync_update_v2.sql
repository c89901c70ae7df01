-- Once per UPDATE statement on customers that changed a value (marker) while the kill switch is on: the
-- set-based sync of the changed rows (transition tables old_customers, new_customers). Transition tables
-- cannot be combined with UPDATE OF, so every updated row is captured (a copy per row in memory, spilling
-- to a temporary file past work_mem); the marker keeps other updates out of PL/pgSQL.
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE ON public.customers
    REFERENCING OLD TABLE AS old_customers NEW TABLE AS new_customers
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('billing_sync.customers_written', true) = 'on' AND billing_sync.sync_due())
    EXECUTE FUNCTION billing_sync.sync_customers();
