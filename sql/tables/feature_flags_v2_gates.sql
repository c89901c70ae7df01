-- Rollout gates on the flag row (revision 0002). `enabled` becomes the kill switch:
-- false turns the flag off for every customer whatever the gates say, and keeps them,
-- so that switching it back on restores the rollout exactly as it was.
--   everyone   on for every customer;
--   percentage 0-100, on for customers whose Unleash bucket (1-100) is <= percentage;
--   actors     billing_sync.feature_flag_actors, on for those customer ids.
-- The gates combine with OR.
ALTER TABLE billing_sync.feature_flags
    ADD COLUMN everyone boolean NOT NULL DEFAULT false,
    ADD COLUMN percentage integer NOT NULL DEFAULT 0
        CONSTRAINT feature_flags_percentage_range CHECK (percentage BETWEEN 0 AND 100);
