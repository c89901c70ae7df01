-- One row per flag that the triggers read. Plain SQL on this table is a supported
-- interface: every change is audited by billing_sync_audit_feature_flags.
CREATE TABLE billing_sync.feature_flags (
    name text PRIMARY KEY
        CONSTRAINT feature_flags_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    enabled boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
