-- Progress of `sync-admin backfill`, one row per run. billing_sync.backfill_batch advances the row in
-- the same transaction as the batch's writes, so after Ctrl-C, kill -9 or a lost connection the row
-- says exactly which customers are done, and the next `sync-admin backfill` resumes after last_id.
-- A run covers the customers that existed when it started (ids up to max_id); later customers are
-- synced by the triggers as they are inserted.
CREATE TABLE billing_sync.backfill_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status text NOT NULL DEFAULT 'running'
        CONSTRAINT backfill_runs_status_check CHECK (status IN ('running', 'finished', 'abandoned')),
    max_id bigint,                                   -- highest customer id at the start; NULL: no customers
    total bigint NOT NULL DEFAULT 0,                 -- customers with id <= max_id at the start (progress, ETA)
    last_id bigint,                                  -- last customer id done; NULL: none yet
    scanned bigint NOT NULL DEFAULT 0,               -- customers looked at
    in_rollout bigint NOT NULL DEFAULT 0,            -- of those, customers the flag was on for
    out_of_state bigint NOT NULL DEFAULT 0,          -- of those, customers found not in their derived state
    accounts_created bigint NOT NULL DEFAULT 0,
    memberships_added bigint NOT NULL DEFAULT 0,
    memberships_removed bigint NOT NULL DEFAULT 0,
    busy bigint NOT NULL DEFAULT 0,                  -- customers left because a live write was creating their account
    batches integer NOT NULL DEFAULT 0,
    database_user text NOT NULL DEFAULT session_user,
    actor text,                                      -- the person who started it (sync-admin: the OS user)
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT backfill_runs_finished_check CHECK ((status = 'running') = (finished_at IS NULL))
);
