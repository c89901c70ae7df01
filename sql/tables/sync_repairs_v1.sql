-- The customers the sync had to leave, waiting for the repair (revision 0007, issue 11). A row is written in
-- the same transaction as the customer write it concerns (a rolled-back write leaves none), so the table is
-- the truth; the notification on channel billing_sync_repairs only wakes the repair up. The repair
-- (billing_sync.sync_customers, run by `sync-admin heal`, the backfill and its final sweep) brings the
-- customer to its derived state as it is when the repair runs, then deletes the customer's rows.
--   reason   why the sync left it:
--            account_contended   another transaction held the claim on its new account (it was creating it);
--                                the repair runs once that transaction has ended
--            snapshot_isolation  the write ran under REPEATABLE READ or SERIALIZABLE, whose snapshot cannot see
--                                what other transactions committed after it (a backfill's rows, an account
--                                created meanwhile); writing from it could leave stale rows or fail the
--                                customer write with a serialization error, so the sync defers to the repair
--            backfill_left       the backfill found the customer out of its derived state but held by a live
--                                transaction (it never waits for one)
--   transaction_id  txid_current() of the write that left it.
--   previous_customer_id  set when the write changed the customer's id under snapshot isolation: the repair
--                   moves the memberships of that old id to this one (what ON UPDATE CASCADE did).
-- No unique key on purpose: an insert that met another transaction's uncommitted duplicate would wait for
-- it, and the sync never waits. Duplicates are harmless (the repair is idempotent and deletes them all).
-- Nothing is granted on it: the SECURITY DEFINER sync functions write it, the repair deletes from it.
CREATE TABLE billing_sync.sync_repairs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    reason text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    transaction_id bigint NOT NULL,
    previous_customer_id bigint
);
