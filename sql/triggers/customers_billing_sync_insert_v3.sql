-- The sync of INSERT statements, released (revision 0013, issue 13; v2 in 0006): once per statement, with the
-- statement's transition table, always (account_data_persistence is retired; there is no kill switch to ask).
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    REFERENCING NEW TABLE AS new_customers
    FOR EACH STATEMENT
    EXECUTE FUNCTION billing_sync.sync_customers_inserted();
