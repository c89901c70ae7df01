-- `sync-admin watch` reads the events of the transactions that committed since its last read: those not visible
-- in the snapshot of that read (billing_sync.sync_events.transaction_id >= its xmin and not visible in it). Built
-- concurrently: the table may be large, and skipped customer writes insert into it meanwhile. One more index entry
-- per skipped row (skips are the exception, bench/skip_cost.py).
CREATE INDEX CONCURRENTLY sync_events_transaction_id_idx
    ON billing_sync.sync_events (transaction_id);
