-- Inserts that carry a value, while the kill switch is on (the schema billing_sync_enabled exists:
-- billing_sync.sync_switch). One built-in function in the WHEN and nothing else: every function in a WHEN
-- costs each statement about 1 us to prepare, evaluated or not (bench/flag_cost.py).
CREATE TRIGGER billing_sync_customer_insert
    AFTER INSERT ON public.customers
    FOR EACH ROW
    WHEN (NEW.zuora_account_id IS NOT NULL
          AND pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL)
    EXECUTE FUNCTION billing_sync.sync_customer_account();
