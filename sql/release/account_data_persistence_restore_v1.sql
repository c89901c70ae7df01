-- The downgrade of the release (revision 0013 down to 0012, issue 13): the flag comes back on for everyone, with the
-- gates it had when it was released (percentage, actors: the last RELEASE record's `before`), and one audit record
-- of it (RESTORE: who and why from billing_sync.actor and billing_sync.reason, `after` the flag row and actors as
-- restored). The revision runs it with the audit triggers of the two tables disabled (one record, not one per
-- actor) and billing_sync_sync_switch enabled, so the kill switch's mirror is back in the same transaction.
-- A flag row someone created by hand after the release takes the gates of the release record (actors are added).
DO $restore$
DECLARE
    released_before jsonb;
    released_id bigint;
    restored jsonb;
    percentage integer := 0;
BEGIN
    SELECT e.before, e.id INTO released_before, released_id
    FROM billing_sync.feature_flag_events e
    WHERE e.flag_name = 'account_data_persistence' AND e.operation = 'RELEASE'
    ORDER BY e.id DESC
    LIMIT 1;

    -- The record is read defensively (it lives in a table its owner can edit, and the rollback of a release must
    -- not fail on it): a percentage that is not an integer from 0 to 100 becomes 0, actors are taken only from an
    -- array of objects with an integer customer_id, a missing or malformed created_at becomes now(). The flag
    -- comes back on for everyone whatever the record holds.
    IF pg_catalog.jsonb_typeof(released_before) IS DISTINCT FROM 'object' THEN
        released_before := '{}';
    END IF;
    IF pg_catalog.jsonb_typeof(released_before -> 'percentage') = 'number'
       AND (released_before ->> 'percentage') ~ '^[0-9]{1,3}$'
       AND (released_before ->> 'percentage')::integer <= 100 THEN
        percentage := (released_before ->> 'percentage')::integer;
    END IF;
    INSERT INTO billing_sync.feature_flags (name, enabled, everyone, percentage)
    VALUES ('account_data_persistence', true, true, percentage)
    ON CONFLICT (name) DO UPDATE SET enabled = true, everyone = true, percentage = EXCLUDED.percentage;
    IF pg_catalog.jsonb_typeof(released_before -> 'actors') = 'array' THEN
        INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id, created_at)
        SELECT DISTINCT ON ((x ->> 'customer_id')::bigint)
               'account_data_persistence', (x ->> 'customer_id')::bigint,
               -- .datetime() in silent mode gives NULL, never an error, for a value that is not a date and time
               coalesce((pg_catalog.jsonb_path_query_first(x, '$.created_at.datetime()', '{}', true) #>> '{}')
                        ::timestamptz, pg_catalog.now())
        FROM pg_catalog.jsonb_array_elements(released_before -> 'actors') AS x
        WHERE pg_catalog.jsonb_typeof(x) = 'object'
          AND pg_catalog.jsonb_typeof(x -> 'customer_id') = 'number'
          AND (x ->> 'customer_id') ~ '^[0-9]{1,18}$'
        ORDER BY (x ->> 'customer_id')::bigint
        ON CONFLICT (flag_name, customer_id) DO NOTHING;
    END IF;

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
