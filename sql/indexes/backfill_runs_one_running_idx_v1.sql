-- At most one unfinished run: it is the one `sync-admin backfill` resumes. (The session advisory
-- lock keeps two backfills from running at once; this keeps the table itself unambiguous.)
CREATE UNIQUE INDEX backfill_runs_one_running_idx
    ON billing_sync.backfill_runs (status)
    WHERE status = 'running';
