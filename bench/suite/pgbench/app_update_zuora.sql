-- Application callbacks for update_zuora.sql: the application writes the billing rows itself, in one
-- transaction, with the fewest statements (look the account up; create it only when missing).
\set id random(1, :customers)
\set account random(1, :accounts)
BEGIN;
UPDATE public.customers SET zuora_account_id = 'A' || :account WHERE id = :id;
SELECT coalesce((SELECT a.id FROM public.billing_accounts a WHERE a.zuora_account_id = 'A' || :account), 0)
    AS account_id \gset
\if :account_id = 0
INSERT INTO public.billing_accounts (zuora_account_id) VALUES ('A' || :account)
    ON CONFLICT (zuora_account_id) DO NOTHING;
SELECT a.id AS account_id FROM public.billing_accounts a WHERE a.zuora_account_id = 'A' || :account \gset
\endif
DELETE FROM public.billing_account_memberships WHERE customer_id = :id AND billing_account_id <> :account_id;
INSERT INTO public.billing_account_memberships (billing_account_id, customer_id) VALUES (:account_id, :id)
    ON CONFLICT (customer_id, billing_account_id) DO NOTHING;
COMMIT;
