-- `sync-admin flag history NAME` and the rollout checks read one flag's events by time.
CREATE INDEX feature_flag_events_flag_name_occurred_at_idx
    ON billing_sync.feature_flag_events (flag_name, occurred_at);
