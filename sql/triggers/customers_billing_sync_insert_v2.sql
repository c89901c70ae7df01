-- The sync of INSERT statements, once per statement while the kill switch is on (the schema
-- billing_sync_enabled exists: billing_sync.sync_switch), with the statement's transition table. One built-in
-- function in the WHEN and nothing else (each function in a WHEN costs every statement about 1 us to
-- prepare). An insert without a value enters PL/pgSQL too (while the flag is on), to find that out.
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    REFERENCING NEW TABLE AS new_customers
    FOR EACH STATEMENT
    WHEN (pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL)
    EXECUTE FUNCTION billing_sync.sync_customers_inserted();
