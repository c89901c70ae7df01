-- The release revision's guard (revision 0013, issue 13), the first statement of the release, online and in the
-- offline SQL (`sync-admin db sql`): the flag is retired only where its rollout is complete, like a deploy-time
-- check of an unfinished background migration. Complete means billing_sync.release_blockers returns nothing: on for
-- everyone for the verification period with no kill-switch event, no drift, no skips. A new, empty database (no
-- customer, the flag never switched on) has nothing to roll out and is released at once.
--
-- Session settings (sync-admin db upgrade sets them from its options; a DBA running the offline SQL with psql sets
-- them with SET before the script):
--   billing_sync.release_min_hours  the verification period in hours (default 24, as `sync-admin rollout check`);
--   billing_sync.release_override   a reason: release although the rollout is not complete. Recorded, with what
--                                   was missing, in the release's audit record;
--   billing_sync.actor, billing_sync.reason  who releases and why, as for every flag change.
-- The verdict goes to the transaction-local setting billing_sync.release_verdict for the release's audit record,
-- with the snapshot the check read (account_data_persistence_retire_v1.sql checks again what committed after it).
-- It reads only (no lock beyond ACCESS SHARE): it runs before the revision takes any lock, as long as a verify.
DO $guard$
DECLARE
    min_hours_text text := coalesce(nullif(pg_catalog.current_setting('billing_sync.release_min_hours', true), ''), '24');
    override text := nullif(pg_catalog.btrim(pg_catalog.current_setting('billing_sync.release_override', true)), '');
    min_hours numeric;
    new_database boolean;
    blockers text[];
BEGIN
    -- A number of hours from 0 to 87600 (ten years), with at most 6 decimals: anything else is refused here, in
    -- one line, rather than recorded (every command reads the record back).
    IF min_hours_text !~ '^[0-9]{1,5}(\.[0-9]{1,6})?$' OR min_hours_text::numeric > 87600 THEN
        RAISE EXCEPTION 'release of account_data_persistence refused: billing_sync.release_min_hours is %, '
                        'not a number of hours from 0 to 87600', pg_catalog.quote_literal(pg_catalog."left"(min_hours_text, 40))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    min_hours := min_hours_text::numeric;
    new_database := NOT EXISTS (SELECT 1 FROM public.customers)
        AND NOT EXISTS (SELECT 1 FROM billing_sync.feature_flag_events e
                        WHERE e.flag_name = 'account_data_persistence' AND (e.after ->> 'enabled')::boolean);
    IF new_database THEN
        blockers := '{}';
    ELSE
        blockers := ARRAY(SELECT billing_sync.release_blockers('account_data_persistence', min_hours));
    END IF;
    IF pg_catalog.cardinality(blockers) > 0 AND override IS NULL THEN
        RAISE EXCEPTION 'release of account_data_persistence refused, the rollout is not complete: %. '
                        'sync-admin rollout check shows the evidence',
                        pg_catalog.array_to_string(blockers, '; ')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM pg_catalog.set_config('billing_sync.release_verdict', pg_catalog.jsonb_build_object(
        'revision', '0013',
        'min_hours', min_hours,
        'new_database', new_database,
        'check_passed', pg_catalog.cardinality(blockers) = 0,
        'blockers', pg_catalog.to_jsonb(blockers),
        'override', override,
        'checked_at', pg_catalog.statement_timestamp(),
        -- What the check saw: the release refuses, under its lock, if a flag change or a skip committed since.
        'snapshot', pg_catalog.pg_current_snapshot()::text)::text, true);
END;
$guard$;
