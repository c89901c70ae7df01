-- Single-row update changing zuora_account_id to a random existing account (the sync has work).
\set id random(1, :customers)
\set account random(1, :accounts)
UPDATE public.customers SET zuora_account_id = 'A' || :account WHERE id = :id;
