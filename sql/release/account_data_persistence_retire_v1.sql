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
BEGIN
    SELECT pg_catalog.to_jsonb(f) INTO flag_row
    FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence';
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
        pg_catalog.current_setting('billing_sync.release_verdict')::jsonb
    );
    DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = 'account_data_persistence';
    DELETE FROM billing_sync.feature_flags WHERE name = 'account_data_persistence';
END;
$retire$;
