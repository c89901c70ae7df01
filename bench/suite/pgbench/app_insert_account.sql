-- Application callbacks for insert_account.sql: the same writes issued by the application in one transaction.
\set account random(1, :accounts)
BEGIN;
INSERT INTO public.customers (email, zuora_account_id)
VALUES ('n' || :account || '@example.com', 'A' || :account)
RETURNING id AS customer_id \gset
SELECT coalesce((SELECT a.id FROM public.billing_accounts a WHERE a.zuora_account_id = 'A' || :account), 0)
    AS account_id \gset
\if :account_id = 0
INSERT INTO public.billing_accounts (zuora_account_id) VALUES ('A' || :account)
    ON CONFLICT (zuora_account_id) DO NOTHING;
SELECT a.id AS account_id FROM public.billing_accounts a WHERE a.zuora_account_id = 'A' || :account \gset
\endif
INSERT INTO public.billing_account_memberships (billing_account_id, customer_id) VALUES (:account_id, :customer_id);
COMMIT;
