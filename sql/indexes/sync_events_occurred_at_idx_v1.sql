-- `sync-admin errors --since` reads a time range, `sync-admin events prune` deletes everything before
-- a time. The only secondary index: every skipped row pays for each index it has.
CREATE INDEX sync_events_occurred_at_idx
    ON billing_sync.sync_events (occurred_at);
