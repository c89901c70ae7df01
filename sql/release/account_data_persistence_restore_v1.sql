-- The downgrade of the release (revision 0013 down to 0012, issue 13): the flag comes back on for everyone, with the
-- gates it had when it was released (percentage, actors: the last RELEASE record's `before`), and one audit record
-- of it (RESTORE: who and why from billing_sync.actor and billing_sync.reason, `after` the flag row and actors as
-- restored). The revision runs it with the audit triggers of the two tables disabled (one record, not one per
-- actor) and billing_sync_sync_switch enabled, so the kill switch's mirror is back in the same transaction.
-- A flag row someone created by hand after the release is switched on for everyone, its other gates kept.
DO $restore$
DECLARE
    released_before jsonb;
    released_id bigint;
    restored jsonb;
BEGIN
    SELECT e.before, e.id INTO released_before, released_id
    FROM billing_sync.feature_flag_events e
    WHERE e.flag_name = 'account_data_persistence' AND e.operation = 'RELEASE'
    ORDER BY e.id DESC
    LIMIT 1;

    INSERT INTO billing_sync.feature_flags (name, enabled, everyone, percentage)
    VALUES ('account_data_persistence', true, true, coalesce((released_before ->> 'percentage')::integer, 0))
    ON CONFLICT (name) DO UPDATE SET enabled = true, everyone = true;
    INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id, created_at)
    SELECT 'account_data_persistence', (x ->> 'customer_id')::bigint, (x ->> 'created_at')::timestamptz
    FROM pg_catalog.jsonb_array_elements(coalesce(released_before -> 'actors', '[]')) AS x
    ON CONFLICT (flag_name, customer_id) DO NOTHING;

    SELECT pg_catalog.to_jsonb(f) || pg_catalog.jsonb_build_object(
               'actors', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                              'customer_id', a.customer_id, 'created_at', a.created_at)
                                          ORDER BY a.customer_id), '[]')
                          FROM billing_sync.feature_flag_actors a WHERE a.flag_name = f.name),
               'release_event_id', released_id)
    INTO restored
    FROM billing_sync.feature_flags f WHERE f.name = 'account_data_persistence';

    INSERT INTO billing_sync.feature_flag_events (
        flag_name, table_name, operation, database_user, application_name, actor, reason, transaction_id, before, after
    ) VALUES (
        'account_data_persistence', 'feature_flags', 'RESTORE', session_user,
        nullif(pg_catalog.current_setting('application_name', true), ''),
        nullif(pg_catalog.current_setting('billing_sync.actor', true), ''),
        nullif(pg_catalog.current_setting('billing_sync.reason', true), ''),
        pg_catalog.txid_current(),
        NULL,
        restored
    );
END;
$restore$;
