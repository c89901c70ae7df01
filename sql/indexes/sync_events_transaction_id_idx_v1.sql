-- `sync-admin watch` reads the events of the transactions that committed since its last read: those not visible
-- in the snapshot of that read (billing_sync.sync_events.transaction_id >= its xmin and not visible in it). Built
-- concurrently: the table may be large, and skipped customer writes insert into it meanwhile. One more index entry
-- per skipped row (skips are the exception, bench/skip_cost.py).
-- No IF NOT EXISTS: a build that failed leaves an INVALID index of this name, which IF NOT EXISTS would keep;
-- the migration drops such a leftover first (online), or the script says to (offline).
-- squawk-ignore prefer-robust-stmts
CREATE INDEX CONCURRENTLY sync_events_transaction_id_idx
    ON billing_sync.sync_events (transaction_id);
