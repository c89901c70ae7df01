-- The audit log learns two more operations (revision 0012, issue 13), written by the release revision and by its
-- downgrade, never by a trigger: RELEASE (the flag was retired: `before` keeps the flag row and its actors,
-- `after` the rollout check it passed or the override it took) and RESTORE (a downgrade put the flag back, on for
-- everyone with the gates it had). The constraint is swapped NOT VALID and validated by the revision in a separate
-- statement, so that the brief ACCESS EXCLUSIVE lock of the swap does not last a scan of the table.
ALTER TABLE billing_sync.feature_flag_events
    DROP CONSTRAINT feature_flag_events_operation_check,
    ADD CONSTRAINT feature_flag_events_operation_check
        CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'RELEASE', 'RESTORE')) NOT VALID;
