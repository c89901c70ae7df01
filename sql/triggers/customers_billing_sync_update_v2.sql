-- The sync of updates that change a customer's raw zuora_account_id while the kill switch is on (the schema
-- billing_sync_enabled exists: billing_sync.sync_switch), row by row. UPDATE OF and the WHEN keep every
-- other update, and every update while the flag is off, out of PL/pgSQL. The WHEN calls one built-in
-- function and nothing else: every function in a WHEN costs each statement about 1 us to prepare, evaluated
-- or not (bench/flag_cost.py), which is most of what a single-row update may cost while the flag is off.
CREATE TRIGGER billing_sync_customer_update
    AFTER UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW
    WHEN (OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id
          AND pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL)
    EXECUTE FUNCTION billing_sync.sync_customer_updated();
