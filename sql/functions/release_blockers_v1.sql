-- What stands between a flag and its release (revision 0012, issue 13): one line per unmet condition of the rollout
-- check, none when the flag may be retired. The release revision's guard runs it in the database itself, online and
-- in the offline SQL a DBA runs with psql (`sync-admin db sql`); anyone can run it by hand:
--     SELECT * FROM billing_sync.release_blockers('account_data_persistence', 24);
-- The conditions are `sync-admin rollout check`'s (sync_admin/rollout.py; tests/test_release.py checks that the two
-- agree), each line says what is missing and what to run:
-- 1. the flag is on for everyone (kill switch and everyone gate);
-- 2. it has been on for everyone for at least min_hours, with no event that took that away (audit log);
-- 3. no drift (billing_sync.account_drift);
-- 4. no sync skips: no customer whose value is not blank and not an account, and none recorded since the period
--    began, except account_contended skips the repair has since done.
-- Read-only; STABLE; it scans the customers once (account_drift), so it takes as long as `sync-admin verify`.
CREATE OR REPLACE FUNCTION billing_sync.release_blockers(flag text, min_hours numeric)
RETURNS SETOF text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    on_for_everyone boolean;
    gates text;
    last_off bigint;
    began timestamptz;
    hours numeric;
    drift text;
    skipped bigint;
    recorded text;
BEGIN
    SELECT f.enabled AND f.everyone,
           CASE WHEN NOT f.enabled THEN 'OFF'
                WHEN f.percentage > 0 THEN 'ON for ' || f.percentage || ' %'
                ELSE 'ON for actors only' END
    INTO on_for_everyone, gates
    FROM billing_sync.feature_flags f
    WHERE f.name = release_blockers.flag;
    IF NOT FOUND THEN
        RETURN NEXT pg_catalog.format('the flag %s does not exist', flag);
        RETURN;
    END IF;
    IF NOT on_for_everyone THEN
        RETURN NEXT pg_catalog.format('%s is not on for everyone (%s): sync-admin flag enable %s --everyone',
                                      flag, gates, flag);
    END IF;

    -- The period on for everyone: the first event after the last one that left the flag not on for everyone.
    SELECT max(e.id) INTO last_off
    FROM billing_sync.feature_flag_events e
    WHERE e.flag_name = release_blockers.flag AND e.table_name = 'feature_flags'
      AND NOT coalesce((e.after ->> 'enabled')::boolean AND (e.after ->> 'everyone')::boolean, false);
    SELECT e.occurred_at INTO began
    FROM billing_sync.feature_flag_events e
    WHERE e.flag_name = release_blockers.flag AND e.table_name = 'feature_flags' AND e.id > coalesce(last_off, 0)
    ORDER BY e.id
    LIMIT 1;
    IF on_for_everyone THEN
        IF began IS NULL THEN
            RETURN NEXT 'no audit event shows when the flag went on for everyone: sync-admin flag history ' || flag;
        ELSE
            hours := extract(epoch FROM pg_catalog.statement_timestamp() - began) / 3600;
            IF hours < min_hours THEN
                RETURN NEXT pg_catalog.format(
                    'on for everyone for %s h of the %s h verification period (since %s): check again after %s',
                    round(hours, 1), min_hours, pg_catalog.to_char(began, 'YYYY-MM-DD HH24:MI:SSOF'),
                    pg_catalog.to_char(began + make_interval(secs => min_hours * 3600), 'YYYY-MM-DD HH24:MI:SSOF'));
            END IF;
        END IF;
    END IF;

    SELECT string_agg(d.item || ': ' || d.row_count, ', ' ORDER BY d.item) FILTER (
               WHERE d.item NOT IN ('in_rollout', 'sync_skip') AND d.row_count > 0),
           max(d.customer_count) FILTER (WHERE d.item = 'sync_skip')
    INTO drift, skipped
    FROM billing_sync.account_drift(0) d;
    IF drift IS NOT NULL THEN
        RETURN NEXT pg_catalog.format('drift (%s): sync-admin backfill, then sync-admin verify', drift);
    END IF;
    IF skipped > 0 THEN
        RETURN NEXT pg_catalog.format(
            'customers whose zuora_account_id is not an account: %s; correct them or set them to NULL '
            '(sync-admin verify --examples 100 lists them)', skipped);
    END IF;

    IF began IS NOT NULL THEN
        SELECT string_agg(r.reason || ': ' || r.events, ', ' ORDER BY r.reason) INTO recorded
        FROM (SELECT e.reason, count(*) AS events
              FROM billing_sync.sync_events e
              WHERE e.occurred_at >= began
                AND NOT (e.reason = 'account_contended'
                         AND NOT EXISTS (SELECT 1 FROM billing_sync.sync_repairs q WHERE q.customer_id = e.customer_id))
              GROUP BY e.reason) r;
        IF recorded IS NOT NULL THEN
            RETURN NEXT pg_catalog.format(
                'sync skips recorded since the flag went on for everyone (%s): sync-admin errors', recorded);
        END IF;
    END IF;
    RETURN;
END;
$function$;
