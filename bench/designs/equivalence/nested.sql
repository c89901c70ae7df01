-- Customers inserted from inside a customers insert (another application's triggers), and skips in
-- single- and multi-row statements of one transaction.
UPDATE billing_sync.feature_flags SET enabled = true, everyone = true;
-- an application trigger that writes customers from inside a customers insert (nested statements)
CREATE FUNCTION public.app_nest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.email LIKE 'nest%' THEN
    INSERT INTO public.customers (email, zuora_account_id) VALUES ('child-a-' || NEW.id, 'K' || NEW.id), ('child-b-' || NEW.id, 'L' || NEW.id);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER app_a_nest BEFORE INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION public.app_nest();
INSERT INTO customers (email, zuora_account_id) VALUES ('nest1', 'N1'), ('nest2', 'N2'), ('nest3', 'N3');
INSERT INTO customers (email, zuora_account_id) VALUES ('nest4', 'N4');
DROP TRIGGER app_a_nest ON public.customers;
CREATE TRIGGER app_z_nest AFTER INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION public.app_nest();
INSERT INTO customers (email, zuora_account_id) VALUES ('nest5', 'N5'), ('nest6', 'N6');
INSERT INTO customers (email, zuora_account_id) VALUES ('nest7', 'N7');
DROP TRIGGER app_z_nest ON public.customers;
BEGIN;
INSERT INTO customers (email, zuora_account_id) VALUES ('t1', 'T1');
INSERT INTO customers (email, zuora_account_id) VALUES ('t2', 'T2'), ('t3', NULL), ('t4', 'bad one');
INSERT INTO customers (email, zuora_account_id) VALUES ('t5', 'T5');
UPDATE customers SET zuora_account_id = 'bad two' WHERE email IN ('t1', 't2');
UPDATE customers SET zuora_account_id = 'bad three' WHERE email = 't5';
COMMIT;
