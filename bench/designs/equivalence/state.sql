-- The derived state, as hashes: memberships (customer, account value), accounts, skip events.
SELECT md5(string_agg(format('%s:%s', m.customer_id, a.zuora_account_id), ',' ORDER BY m.customer_id, a.zuora_account_id)) AS memberships, count(*) FROM billing_account_memberships m JOIN billing_accounts a ON a.id = m.billing_account_id;
SELECT md5(string_agg(zuora_account_id, ',' ORDER BY zuora_account_id)) AS accounts, count(*) FROM billing_accounts;
SELECT md5(string_agg(format('%s:%s:%s', customer_id, operation, reason), ',' ORDER BY customer_id, operation, reason)) AS events, count(*) FROM billing_sync.sync_events;
