-- The release itself (revision 0013, issue 13), after the guard: one audit record of the retirement, then the flag
-- row and its actors go. The revision runs it with the audit triggers and billing_sync_forbid_retirement of the two
-- tables disabled (ALTER TABLE ... DISABLE TRIGGER, in its transaction), so that the retirement is this one record
-- and not a DELETE event per actor. The record keeps everything a downgrade needs to put the flag back as it was:
--   before: the flag row and its actors ({"name": ..., "enabled": ..., "actors": [{"customer_id", "created_at"}]});
--   after:  the guard's verdict (billing_sync.release_verdict: the check it passed, or the override and what was
--           missing), who and why (billing_sync.actor, billing_sync.reason, as every flag change).
DO $retire$
DECLARE
    flag_row jsonb;
    actor_rows jsonb;
    verdict jsonb;
    seen pg_catalog.pg_snapshot;
    changes bigint;
    skips bigint;
BEGIN
    SELECT pg_catalog.to_jsonb(f) INTO flag_row
    FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence';
    verdict := pg_catalog.current_setting('billing_sync.release_verdict')::jsonb;
    seen := (verdict ->> 'snapshot')::pg_catalog.pg_snapshot;
    -- The guard's check ran before this revision locked customers and the flag tables (the check reads for as long
    -- as a verify, the lock may take minutes of retries). What committed since, invisible to the check, is looked
    -- at here, under the lock, where nothing else can commit any more: a change of the flag (a kill switch pulled,
    -- even if resumed: the verification period starts again) or a skip (anything but account_contended, which the
    -- repair does). Either refuses the release as the check would have. Not for a new database or an override:
    -- the guard let those through whatever happened. (sync_events is read through its transaction_id index; the
    -- flag's audit events are few.)
    IF (verdict ->> 'check_passed')::boolean AND NOT (verdict ->> 'new_database')::boolean THEN
        SELECT count(*) INTO changes
        FROM billing_sync.feature_flag_events e
        WHERE e.flag_name = 'account_data_persistence'
          AND e.transaction_id >= pg_catalog.pg_snapshot_xmin(seen)::text::bigint
          AND NOT pg_catalog.pg_visible_in_snapshot(e.transaction_id::text::xid8, seen);
        SELECT count(*) INTO skips
        FROM billing_sync.sync_events e
        WHERE e.transaction_id >= pg_catalog.pg_snapshot_xmin(seen)::text::bigint
          AND NOT pg_catalog.pg_visible_in_snapshot(e.transaction_id::text::xid8, seen)
          AND e.reason <> 'account_contended';
        IF changes > 0 OR skips > 0 THEN
            RAISE EXCEPTION 'release of account_data_persistence refused, the rollout is not complete: while the '
                            'release waited for its lock, % flag change(s) and % sync skip(s) committed that its check '
                            'did not see. sync-admin rollout check shows the evidence', changes, skips
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('customer_id', a.customer_id,
                                                                       'created_at', a.created_at)
                                         ORDER BY a.customer_id), '[]')
    INTO actor_rows
    FROM billing_sync.feature_flag_actors a WHERE a.flag_name = 'account_data_persistence';

    INSERT INTO billing_sync.feature_flag_events (
        flag_name, table_name, operation, database_user, application_name, actor, reason, transaction_id, before, after
    ) VALUES (
        'account_data_persistence', 'feature_flags', 'RELEASE', session_user,
        nullif(pg_catalog.current_setting('application_name', true), ''),
        nullif(pg_catalog.current_setting('billing_sync.actor', true), ''),
        nullif(pg_catalog.current_setting('billing_sync.reason', true), ''),
        pg_catalog.txid_current(),
        flag_row || pg_catalog.jsonb_build_object('actors', actor_rows),
        verdict
    );
    DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = 'account_data_persistence';
    DELETE FROM billing_sync.feature_flags WHERE name = 'account_data_persistence';
END;
$retire$;
