-- Every customer write the sync could not carry out, recorded instead of raised (issue 5): one row
-- per skipped customer write, written by billing_sync.sync_customer_account (v3) in the same
-- transaction as the customer write, so a rolled-back write leaves no event.
--   reason          stable code, the contract with dashboards and alerts (README "Monitoring"):
--                   not_an_account      the value is not blank but fails the normalisation rule
--                   account_contended   another transaction is creating the same new account right now;
--                                       the membership is left to the next write or the backfill
--                                       rather than waiting on it (which could deadlock)
--                   account_unresolved  the account could be neither found nor created
--                   membership_unwritten the membership insert wrote nothing and no membership exists
--                   There is no CHECK on it on purpose: a constraint failing inside the trigger would
--                   fail the customer write, the one thing the sync must never do.
--   value           the raw zuora_account_id, cut to its first 200 characters (values up to any
--                   length are stored in customers; events stay small); value_length is the full length.
--   transaction_id  txid_current() of the customer write: ties together the events of one statement
--                   and lets `sync-admin watch` find them from a notification.
-- customer_id has no foreign key: events outlive deleted customers, and a check against customers
-- would cost every skipped row a lookup. Pruned by `sync-admin events prune --older-than 30d`.
-- Nothing is granted on it: the SECURITY DEFINER trigger function writes it, sync-admin reads it.
CREATE TABLE billing_sync.sync_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    customer_id bigint NOT NULL,
    operation text NOT NULL,
    reason text NOT NULL,
    value text,
    value_length integer,
    transaction_id bigint NOT NULL,
    database_user text NOT NULL DEFAULT session_user,
    application_name text DEFAULT nullif(current_setting('application_name', true), '')
);
