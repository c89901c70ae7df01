-- Append-only audit of every change to a flag row, by SQL or by sync-admin.
-- Rows are written only by billing_sync.record_feature_flag_event (SECURITY DEFINER);
-- no privilege on this table is granted to anyone, so only its owner can alter rows.
-- flag_name has no foreign key: the history must outlive a deleted flag.
CREATE TABLE billing_sync.feature_flag_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    flag_name text NOT NULL,
    table_name text NOT NULL,
    operation text NOT NULL
        CONSTRAINT feature_flag_events_operation_check CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    database_user text NOT NULL,
    application_name text,
    actor text,
    reason text,
    transaction_id bigint NOT NULL,
    before jsonb,
    after jsonb
);
