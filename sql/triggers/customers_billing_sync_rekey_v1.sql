-- A customer whose id changes keeps its memberships (revision 0007: billing_sync.sync_customer_removed says why
-- this replaced the foreign key's ON UPDATE CASCADE). Only updates that change the id enter PL/pgSQL.
CREATE TRIGGER billing_sync_customer_rekey
    AFTER UPDATE OF id ON public.customers
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION billing_sync.sync_customer_removed();
