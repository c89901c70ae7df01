-- The actor gate: customer ids for which a flag is on (the targeted testing customers).
-- No foreign key to customers: an actor is an id the rollout names, and this keeps
-- customer deletes free of checks against the machinery's tables. sync-admin refuses
-- ids that are not customers. The primary key makes the trigger's check an index lookup.
CREATE TABLE billing_sync.feature_flag_actors (
    flag_name text NOT NULL
        CONSTRAINT feature_flag_actors_flag_name_fkey
        REFERENCES billing_sync.feature_flags (name) ON DELETE CASCADE ON UPDATE CASCADE,
    customer_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_flag_actors_pkey PRIMARY KEY (flag_name, customer_id)
);
