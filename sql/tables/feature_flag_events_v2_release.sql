-- The audit log learns two more operations (revision 0012, issue 13), written by the release revision and by its
-- downgrade, never by a trigger: RELEASE (the flag was retired: `before` keeps the flag row and its actors,
-- `after` the rollout check it passed or the override it took) and RESTORE (a downgrade put the flag back, on for
-- everyone with the gates it had).
-- squawk: the constraint is swapped and validated in one statement, under the ACCESS EXCLUSIVE lock the revision
-- takes with retries: the table holds one row per flag change (hundreds), its scan takes a millisecond, so a NOT
-- VALID constraint validated in a separate transaction would buy nothing; dropping the old check loses nothing
-- (the new one admits everything it admitted).
ALTER TABLE billing_sync.feature_flag_events
    -- squawk-ignore ban-drop-constraint
    DROP CONSTRAINT feature_flag_events_operation_check,
    -- squawk-ignore constraint-missing-not-valid
    ADD CONSTRAINT feature_flag_events_operation_check
        CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'RELEASE', 'RESTORE'));
