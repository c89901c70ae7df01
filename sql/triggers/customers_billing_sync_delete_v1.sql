-- A deleted customer's memberships go with it (revision 0007: billing_sync.sync_customer_removed says why this
-- replaced the foreign key's ON DELETE CASCADE). Whatever the flag says, as the cascade did.
CREATE TRIGGER billing_sync_customer_delete
    AFTER DELETE ON public.customers
    FOR EACH ROW
    EXECUTE FUNCTION billing_sync.sync_customer_removed();
