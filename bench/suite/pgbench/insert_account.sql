-- Insert of a new customer on a random existing account.
\set account random(1, :accounts)
INSERT INTO public.customers (email, zuora_account_id)
VALUES ('n' || :account || '@example.com', 'A' || :account);
